//! The cluster harness (`keel_tests::cluster`) on its own, without the keel
//! agent: the node config keel will read, the writer's record against a
//! real Postgres, the fault helpers, the etcd proxy, and a cluster of
//! stand-in agents (this test binary run again as `postgres`, starting
//! Postgres and holding the leader key) to check spawning, observing,
//! killing and, above all, that dropping a cluster leaves nothing running.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use keel_runtime::config::{parse, InitdbOption, SynchronousMode};
use keel_runtime::dcs::etcd::{EtcdKv, EtcdOptions};
use keel_runtime::dcs::patroni::Acquired;
use keel_runtime::dcs::{Dcs, Keys, KvError};
use keel_runtime::pg::{DataDirState, PgCtl, ServerConfig};
use keel_tests::cluster::{
    config_yaml, procs, Ack, ClusterOptions, ConfigSpec, Endpoint, EtcdProxy, KeelCluster, WriteLog, Writer,
    REWIND_USER,
};
use keel_tests::etcd::EtcdServer;
use keel_tests::postgres::{PgNode, PG_TIMEOUT};

fn spec<'a>(options: &'a ClusterOptions, dir: &'a Path, bin_dir: &'a Path) -> ConfigSpec<'a> {
    ConfigSpec { options, name: "pg2", pg_port: 15432, api_port: 18008, etcd_port: 12379, dir, bin_dir }
}

#[test]
fn node_config_loads_with_no_warning_and_means_what_the_harness_meant() {
    let dir = PathBuf::from("/tmp/keel-cluster-1-0/pg2");
    let bin_dir = PathBuf::from("/usr/lib/postgresql/15/bin");
    for (synchronous_mode, scram_auth) in [(false, false), (true, false), (false, true)] {
        let options = ClusterOptions { synchronous_mode, scram_auth, ..ClusterOptions::default() };
        let yaml = config_yaml(&spec(&options, &dir, &bin_dir));
        let loaded = parse(&yaml, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert_eq!(loaded.warnings, Vec::<String>::new(), "{yaml}");
        let c = loaded.config;
        assert_eq!(
            (c.scope.as_str(), c.namespace.as_str(), c.name.as_str()),
            ("keel-e2e", "/service/", "pg2")
        );
        assert_eq!(c.restapi.listen, "127.0.0.1:18008");
        assert_eq!(c.restapi.connect_address.as_deref(), Some("127.0.0.1:18008"));
        assert_eq!(c.etcd3.hosts, ["127.0.0.1:12379"]);
        let dcs = &c.bootstrap.dcs;
        assert_eq!((dcs.ttl, dcs.loop_wait, dcs.retry_timeout), (5, 1, 2));
        assert_eq!(dcs.maximum_lag_on_failover, 1_048_576);
        let mode = if synchronous_mode { SynchronousMode::On } else { SynchronousMode::Off };
        assert_eq!(dcs.synchronous_mode, mode);
        assert!(dcs.postgresql.use_pg_rewind);
        assert_eq!(dcs.postgresql.parameters["wal_log_hints"], "on");
        assert_eq!(
            c.bootstrap.initdb,
            [
                InitdbOption::Value { name: "encoding".into(), value: "UTF8".into() },
                InitdbOption::Flag("data-checksums".into())
            ]
        );
        let pg = &c.postgresql;
        assert_eq!(pg.listen, "127.0.0.1:15432");
        assert_eq!(pg.connect_address.as_deref(), Some("127.0.0.1:15432"));
        assert_eq!(pg.data_dir, dir.join("data"));
        assert_eq!(pg.bin_dir.as_deref(), Some(bin_dir.as_path()));
        let socket_dir = dir.join("sock").to_string_lossy().into_owned();
        assert_eq!(pg.parameters["unix_socket_directories"].as_str(), Some(socket_dir.as_str()));
        assert_eq!(pg.authentication.superuser.username, "postgres");
        assert_eq!(pg.authentication.superuser.password.as_deref(), Some("postgres"));
        assert_eq!(pg.authentication.replication.username, "replicator");
        let rewind = pg.authentication.rewind.as_ref().expect("a rewind user");
        let (tcp_auth, (rewind_user, rewind_password)) =
            if scram_auth { ("scram-sha-256", REWIND_USER) } else { ("trust", ("postgres", "postgres")) };
        assert_eq!(
            (rewind.username.as_str(), rewind.password.as_deref()),
            (rewind_user, Some(rewind_password))
        );
        assert_eq!(
            pg.pg_hba,
            [
                "local all all trust".to_owned(),
                format!("host all all 127.0.0.1/32 {tcp_auth}"),
                format!("host replication all 127.0.0.1/32 {tcp_auth}"),
            ]
        );
        assert!(c.tags.to_core().can_fail_over());
    }
}

#[test]
fn keel_bin_defaults_to_the_target_directory_of_the_test_executable() {
    let exe = std::env::current_exe().unwrap();
    let expected = exe.parent().unwrap().parent().unwrap().join("keel");
    if std::env::var_os("KEEL_BIN").is_none() {
        assert_eq!(keel_tests::cluster::keel_bin(), expected);
    }
}

fn ack(id: i64, node: &str, t0: Instant, sent_ms: u64, acked_ms: u64) -> Ack {
    let at = |ms| t0 + Duration::from_millis(ms);
    Ack { id, node: node.into(), sent_at: at(sent_ms), acked_at: at(acked_ms) }
}

#[test]
fn write_log_finds_gaps_missing_ids_eras_and_overlapping_writers() {
    let t0 = Instant::now();
    let clean = WriteLog {
        acks: vec![
            ack(1, "pg1", t0, 0, 5),
            ack(2, "pg1", t0, 50, 55),
            ack(5, "pg2", t0, 2_000, 2_010),
            ack(6, "pg2", t0, 2_050, 2_060),
        ],
        failures: vec![],
    };
    let gap = clean.longest_gap().unwrap();
    assert_eq!(gap.duration(), Duration::from_millis(2_010 - 55));
    assert_eq!(clean.missing_from(&[1, 2, 6].into()), [5]);
    assert_eq!(clean.first_ack_elsewhere(t0 + Duration::from_millis(60), "pg1").map(|a| a.id), Some(5));
    assert_eq!(clean.last_ack_on("pg1").map(|a| a.id), Some(2));
    let eras = clean.eras();
    assert_eq!(
        eras.iter().map(|e| (e.node.as_str(), e.writes)).collect::<Vec<_>>(),
        [("pg1", 2), ("pg2", 2)]
    );
    assert!(clean.overlaps().is_empty(), "{:?}", clean.overlaps());

    // pg1 acknowledges a write sent before pg2's first, but only after it:
    // the two commit windows overlap.
    let mut split = clean.clone();
    split.acks.push(ack(3, "pg1", t0, 1_990, 2_020));
    assert_eq!(split.overlaps().len(), 1, "{:?}", split.eras());
    // pg1 acknowledges within a write of pg2's: overlap.
    let mut inside = clean.clone();
    inside.acks.push(ack(7, "pg1", t0, 2_055, 2_058));
    assert_eq!(inside.eras().len(), 3);
    assert_eq!(inside.overlaps().len(), 1, "{:?}", inside.overlaps());
    // pg1 acknowledges between two of pg2's writes: the windows do not
    // overlap, but pg1 returned, which the scenarios do not expect.
    let mut between = clean.clone();
    between.acks.push(ack(7, "pg1", t0, 2_030, 2_035));
    assert!(between.overlaps().is_empty());
    assert_eq!(between.returning_nodes(), ["pg1", "pg2"]);
    assert_eq!(clean.returning_nodes(), Vec::<String>::new());
    assert!(WriteLog::default().longest_gap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_postmaster_stops_a_running_server_and_finds_nothing_the_second_time() {
    let mut node = PgNode::new("victim");
    node.initdb().await;
    node.start(node.config()).await;
    let pid = node.ctl.postmaster_pid().expect("running") as u32;

    assert_eq!(procs::kill_postmaster(&node.ctl.data_dir), Some(pid));

    assert!(!node.ctl.is_running());
    assert!(!procs::is_alive(pid));
    assert_eq!(procs::kill_postmaster(&node.ctl.data_dir), None, "nothing left to kill");
    let refused = keel_tests::cluster::writer::connect(node.port, "t", Duration::from_secs(2)).await;
    assert!(refused.is_err(), "a killed server still answers");
}

/// The writer against one server that crashes for a while: acknowledged
/// ids are all in the table, failures are recorded, and the outage is the
/// longest gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_records_acknowledged_ids_and_the_gap_of_an_outage() {
    let mut node = PgNode::new("pg1");
    node.initdb().await;
    node.start(node.config()).await;
    let writer = Writer::follow_primary(vec![Endpoint { name: "pg1".into(), port: node.port }]);
    writer.wait_for_ack(Duration::from_secs(10), "a first write", |_| true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    procs::kill_postmaster(&node.ctl.data_dir).expect("a running postmaster");
    // After the kill: a write sent while `kill` ran may still have landed.
    let crashed = Instant::now();
    tokio::time::sleep(Duration::from_millis(700)).await;
    node.start(node.config()).await;
    let back = writer
        .wait_for_ack(Duration::from_secs(20), "a write after the restart", |a| a.sent_at > crashed)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = writer.stop().await;

    eprintln!("{}", log.summary(crashed));
    assert!(log.acks.len() >= 10, "{}", log.summary(crashed));
    assert!(
        log.failures.iter().any(|f| f.at > crashed && f.at < back.sent_at),
        "the outage shows as failures"
    );
    let ids: Vec<i64> = log.acks.iter().map(|a| a.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "one writer's ids increase: {ids:?}");
    let gap = log.longest_gap().expect("writes on both sides of the outage");
    assert!(gap.duration() >= Duration::from_millis(700), "{gap:?}");
    assert!(gap.from <= crashed && gap.to >= back.acked_at, "{gap:?}");
    assert_eq!(log.eras().len(), 1, "one node, one era");
    let client = keel_tests::cluster::writer::connect(node.port, "t", Duration::from_secs(5)).await.unwrap();
    let present: BTreeSet<i64> =
        client.query("SELECT id FROM keel_writes", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(log.missing_from(&present), Vec::<i64>::new());
    let mut lossy = present.clone();
    let lost = *log.acked_ids().iter().nth(3).unwrap();
    lossy.remove(&lost);
    assert_eq!(log.missing_from(&lossy), [lost], "a lost write is found");
}

/// The every-node writer on a primary and its standby: only the primary
/// acknowledges, the standby refuses every write, no overlap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_writer_sees_only_the_primary_accept_writes() {
    let mut primary = PgNode::new("pg1");
    primary.initdb().await;
    primary.start(primary.config()).await;
    let mut standby = PgNode::new("pg2");
    standby.ctl.basebackup(&primary.conninfo(), PG_TIMEOUT).await.unwrap();
    standby.ctl.set_standby(true).unwrap();
    let mut config = standby.config();
    config.upstream = Some(primary.upstream());
    standby.start(config).await;

    let prober = Writer::every_node(vec![
        Endpoint { name: "pg1".into(), port: primary.port },
        Endpoint { name: "pg2".into(), port: standby.port },
    ]);
    prober.wait_for_ack(Duration::from_secs(10), "a write on pg1", |a| a.node == "pg1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = prober.stop().await;

    assert!(log.acks.iter().all(|a| a.node == "pg1"), "{}", log.summary(log.acks[0].sent_at));
    let refused: Vec<_> = log.failures.iter().filter(|f| f.node.as_deref() == Some("pg2")).collect();
    assert!(refused.len() >= 5, "{}", log.summary(log.acks[0].sent_at));
    assert!(refused.iter().any(|f| f.error.contains("read-only")), "{:?}", refused.last());
    assert!(log.overlaps().is_empty());
    assert_eq!(log.eras().len(), 1);
}

async fn etcd_through(port: u16) -> Result<EtcdKv, KvError> {
    let opts = EtcdOptions {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    EtcdKv::connect(&opts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_proxy_forwards_and_a_cut_makes_etcd_unavailable_until_healed() {
    let etcd = EtcdServer::start();
    let upstream = etcd.endpoint.strip_prefix("http://").unwrap().parse().unwrap();
    let proxy = EtcdProxy::start(upstream).await;
    let mut dcs =
        Dcs::new(etcd_through(proxy.port).await.unwrap(), Keys::new("/service/", "p"), "pg1", "", "");
    assert_eq!(dcs.acquire(10_000).await.unwrap(), Acquired::Yes { ttl_ms: 10_000 });

    proxy.cut();
    let cut = Instant::now();
    match dcs.read().await {
        Err(KvError::Unavailable(_)) => {}
        other => panic!("expected unavailable through a cut proxy, got {other:?}"),
    }
    assert!(cut.elapsed() < Duration::from_secs(5), "took {:?}", cut.elapsed());
    // etcd-client connects lazily: a new client fails on its first request.
    if let Ok(kv) = etcd_through(proxy.port).await {
        let fresh = Dcs::new(kv, Keys::new("/service/", "p"), "pg2", "", "");
        assert!(fresh.read().await.is_err(), "a new client gets through a cut proxy");
    }

    proxy.heal();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match dcs.read().await {
            Ok(snap) => {
                assert_eq!(snap.view.leader.map(|l| l.name).as_deref(), Some("pg1"));
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "still cut off 20 s after healing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// --- a cluster of stand-in agents ------------------------------------------

const STAND_IN_CONFIG: &str = "KEEL_TEST_STAND_IN_CONFIG";

/// The stand-in agent's command: this test binary, running only
/// [`stand_in_agent_for_the_harness_tests`], told its config by variable.
fn stand_in(config: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().expect("test binary"));
    command
        .args(["--exact", "stand_in_agent_for_the_harness_tests", "--nocapture", "--test-threads=1"])
        .env(STAND_IN_CONFIG, config);
    command
}

fn stand_in_options() -> ClusterOptions {
    ClusterOptions { agent_command: Some(stand_in), ..ClusterOptions::default() }
}

/// Not a test on its own: does nothing unless a stand-in cluster runs it
/// as an agent. Then it loads the node's config as keel would, initdb's
/// and starts Postgres *without* a parent-death signal (so that a killed
/// stand-in leaves an orphaned postmaster for the cluster's drop to find),
/// holds the leader key while it can, and on SIGTERM stops Postgres,
/// releases the key and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_agent_for_the_harness_tests() {
    let Some(path) = std::env::var_os(STAND_IN_CONFIG) else { return };
    let loaded = keel_runtime::config::load(path.as_ref(), &BTreeMap::new()).expect("the node's config");
    let c = loaded.config;
    let node_dir = c.postgresql.data_dir.parent().expect("data dir in a node dir").to_owned();
    let mut ctl = PgCtl::new(c.postgresql.bin_dir.clone().expect("bin_dir"), &c.postgresql.data_dir);
    ctl.setpriv = None;
    ctl.server_log = Some(node_dir.join("postgres.log"));
    if ctl.data_dir_state().unwrap() != DataDirState::Initialised {
        let mut options: Vec<String> = c.bootstrap.initdb.iter().map(InitdbOption::to_arg).collect();
        options.extend(["--auth=trust".into(), "--no-sync".into(), "--no-instructions".into()]);
        ctl.initdb(&options, PG_TIMEOUT).await.expect("initdb");
    }
    let port: u16 = c.postgresql.listen.rsplit_once(':').unwrap().1.parse().unwrap();
    let mut server = ServerConfig::new(&c.name, port);
    server.listen_addresses = "127.0.0.1".into();
    server.socket_dir = PathBuf::from(c.postgresql.parameters["unix_socket_directories"].as_str().unwrap());
    server.hba = c.postgresql.pg_hba.clone();
    server.parameters.insert("fsync".into(), "off".into());
    ctl.write_config(&server).expect("postgresql.conf");
    if !ctl.is_running() {
        ctl.start(PG_TIMEOUT).await.expect("start Postgres");
    }
    println!("stand-in {}: Postgres runs on port {port}", c.name);

    let opts = EtcdOptions {
        endpoints: c.etcd3.hosts.iter().map(|h| format!("http://{h}")).collect(),
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let kv = loop {
        match EtcdKv::connect(&opts).await {
            Ok(kv) => break kv,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let conn_url = format!("postgres://127.0.0.1:{port}/postgres");
    let mut dcs =
        Dcs::new(kv, Keys::new(&c.namespace, &c.scope), &c.name, &conn_url, "http://127.0.0.1:1/patroni");
    let ttl_ms = u64::try_from(c.bootstrap.dcs.ttl).unwrap() * 1_000;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    let mut leading = false;
    loop {
        leading = if leading {
            matches!(dcs.renew(0).await, Ok(Some(_)))
        } else {
            matches!(dcs.acquire(ttl_ms).await, Ok(Acquired::Yes { .. }))
        };
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = term.recv() => {
                println!("stand-in {}: SIGTERM", c.name);
                ctl.stop(keel_core::StopMode::Fast, PG_TIMEOUT).await.expect("stop Postgres");
                if leading {
                    let _ = dcs.release(0).await;
                }
                std::process::exit(0);
            }
        }
    }
}

/// Processes under `root` that are alive, described.
fn running_under(root: &Path) -> Vec<String> {
    procs::processes_mentioning(root).into_iter().map(|p| format!("{p}: {}", procs::cmdline(p))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_cluster_is_observed_written_through_and_dropped_without_a_trace() {
    let cluster = KeelCluster::start(2, stand_in_options()).await;
    let leader = cluster.wait_for_leader(Duration::from_secs(60)).await;
    assert!(leader == "pg1" || leader == "pg2", "{leader}");
    for node in cluster.nodes() {
        let pid = node.agent_pid().expect("an agent");
        if let Some((uid, _)) = keel_tests::postgres::pg_ctl(&node.data_dir, &node.log_path).run_as {
            assert_eq!(procs::uid_of(pid), Some(uid), "{} runs as the Postgres user", node.name);
        }
        cluster.wait_recovery_state(&node.name, false, Duration::from_secs(60)).await;
    }
    let view = cluster.view().await.unwrap();
    assert_eq!(view.leader.map(|l| l.name), Some(leader.clone()));
    let (streaming_leader, replicas) = cluster.wait_streaming_replicas(0, Duration::from_secs(5)).await;
    assert_eq!((streaming_leader, replicas), (leader.clone(), vec![]));
    let rows = cluster.sql("pg1", "SELECT 1, NULL::text; SELECT 'two'").await.unwrap();
    assert_eq!(rows, [vec![Some("1".to_owned()), None], vec![Some("two".to_owned())]]);

    let writer = cluster.writer();
    writer.wait_for_ack(Duration::from_secs(10), "a first write", |_| true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = writer.stop().await;
    let node = &log.acks[0].node;
    assert!(log.acks.iter().all(|a| &a.node == node), "the writer sticks to the last good node");
    assert_eq!(cluster.missing_on(&log, node).await, Vec::<i64>::new());
    cluster.wait_replicated(&log, node, Duration::from_secs(5)).await;
    assert!(
        cluster.node("pg1").log().contains("stand-in pg1: Postgres runs"),
        "{}",
        cluster.node("pg1").log()
    );

    let root = cluster.root().to_owned();
    let postmasters: Vec<u32> = cluster.nodes().iter().filter_map(|n| n.postmaster_pid()).collect();
    assert_eq!(postmasters.len(), 2);
    let mut everything: Vec<u32> = postmasters.iter().flat_map(|&p| procs::descendants(p)).collect();
    everything.extend(&postmasters);
    everything.extend(cluster.nodes().iter().filter_map(|n| n.agent_pid()));
    assert!(!running_under(&root).is_empty(), "the postmasters' command lines name their data directories");

    drop(cluster);

    assert_eq!(running_under(&root), Vec::<String>::new());
    assert_eq!(procs::alive(everything.iter().copied()), Vec::<u32>::new(), "agents, postmasters, backends");
    assert!(!root.exists(), "scratch directory removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stand_in_agent_is_stopped_killed_and_restarted_and_its_orphan_is_reaped_on_drop() {
    let mut cluster = KeelCluster::start(1, stand_in_options()).await;
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(60)).await, "pg1");
    cluster.wait_recovery_state("pg1", false, Duration::from_secs(60)).await;

    // SIGTERM: the stand-in stops Postgres, releases the key, exits 0.
    let status = cluster.stop_agent("pg1", Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}\n{}", cluster.node("pg1").log());
    assert!(cluster.node("pg1").postmaster_pid().is_none());
    assert_eq!(cluster.leader().await, None, "released on the way out");

    // Restarted on the same data: leads and serves again.
    cluster.restart_agent("pg1");
    assert_eq!(cluster.wait_for_leader(Duration::from_secs(30)).await, "pg1");
    cluster.wait_recovery_state("pg1", false, Duration::from_secs(30)).await;

    // The postmaster alone killed: the agent lives on.
    let pid = cluster.kill_postmaster("pg1").expect("a postmaster to kill");
    assert!(!procs::is_alive(pid));
    assert!(cluster.node("pg1").agent_pid().is_some_and(procs::is_alive));
    let twice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cluster.restart_agent("pg1")));
    assert!(twice.is_err(), "restarting a running agent must fail");

    // An etcd outage: no leader visible; back after the restart.
    let stopped = cluster.etcd_stop();
    assert_eq!(cluster.leader().await, None);
    assert!(stopped.elapsed() < Duration::from_secs(5));
    cluster.etcd_start();
    cluster.wait_for_leader(Duration::from_secs(30)).await;

    // SIGKILL of the agent orphans its Postgres (the stand-in starts it
    // without a parent-death signal): the drop must find and stop it.
    // (The stand-in starts Postgres only when it starts.)
    assert!(cluster.stop_agent("pg1", Duration::from_secs(30)).await.success());
    cluster.restart_agent("pg1");
    cluster.wait_recovery_state("pg1", false, Duration::from_secs(60)).await;
    let orphan = cluster.node("pg1").postmaster_pid().expect("Postgres runs again");
    cluster.kill_agent("pg1");
    assert!(procs::is_alive(orphan), "the orphaned postmaster lives on");
    let root = cluster.root().to_owned();
    drop(cluster);
    assert!(!procs::is_alive(orphan), "the orphaned postmaster {orphan} survived the drop");
    assert_eq!(running_under(&root), Vec::<String>::new());
}
