//! keel's Postgres layer against real PostgreSQL 15 on loopback: initdb and
//! pg_controldata, the SQL probe of a primary and a streaming standby,
//! synchronous replication, promotion to a new timeline, the crashed old
//! primary's crash recovery and pg_rewind, and the postmaster dying with the
//! agent (safety rule 7).

use std::time::{Duration, Instant};

use keel_core::{
    ControlState, DataDir, PgFacts, PgProcess, StandbySyncState, StopMode, SyncNames, TimelineSwitch,
};
use keel_runtime::pg::control::PgCtlError;
use keel_runtime::pg::probe::connect;
use keel_runtime::pg::{facts, write_timeline_origin, ConnTarget, DataDirState, Observer};
use keel_tests::postgres::{pg_ctl, PgNode, PG_TIMEOUT};

/// Polls `facts` until `check` holds, for at most 20 s.
async fn until(node: &PgNode, what: &str, check: impl Fn(&PgFacts) -> bool) -> PgFacts {
    let started = Instant::now();
    loop {
        let seen = facts(&node.ctl, &node.conn()).await;
        if check(&seen) {
            return seen;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{}: waited 20 s for {what}; last facts: {seen:#?}",
            node.name
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sql(node: &PgNode, statements: &str) {
    let client = connect(&node.conn()).await.unwrap_or_else(|e| panic!("{}: {e}", node.name));
    client.batch_execute(statements).await.unwrap_or_else(|e| panic!("{}: {statements}: {e}", node.name));
}

async fn count_rows(node: &PgNode) -> i64 {
    let client = connect(&node.conn()).await.unwrap_or_else(|e| panic!("{}: {e}", node.name));
    client.query_one("SELECT count(*) FROM t", &[]).await.expect("count rows").get(0)
}

#[tokio::test]
async fn initdb_with_checksums_leaves_a_cleanly_shut_down_cluster_with_checksums_on() {
    let node = PgNode::new("pg1");
    assert_eq!(node.ctl.data_dir_state().unwrap(), DataDirState::Empty);
    assert_eq!(facts(&node.ctl, &node.conn()).await, PgFacts::empty());

    node.initdb().await;

    assert_eq!(node.ctl.data_dir_state().unwrap(), DataDirState::Initialised);
    let control = node.ctl.controldata().await.unwrap();
    assert_eq!(control.state, ControlState::ShutDown);
    assert!(control.state.is_clean());
    assert_ne!(control.data_checksum_version, 0, "checksums on");
    assert_eq!(control.checkpoint_timeline, 1);
    assert_ne!(control.system_id, 0);
    let seen = facts(&node.ctl, &node.conn()).await;
    assert_eq!(seen.process, PgProcess::Stopped);
    assert_eq!(seen.data, DataDir::Initialised(control.to_core()));
    assert_eq!((seen.timeline, seen.write_lsn), (1, control.checkpoint_lsn));
    assert!(seen.history.is_empty() && seen.timeline_origin.is_none());
    let again = node.ctl.initdb(&[], PG_TIMEOUT).await;
    assert!(matches!(again, Err(PgCtlError::Refused(_))), "initdb over a cluster: {again:?}");
    let clone = node.ctl.basebackup("host=127.0.0.1", PG_TIMEOUT).await;
    assert!(matches!(clone, Err(PgCtlError::Refused(_))), "base backup over a cluster: {clone:?}");
}

#[tokio::test]
async fn start_with_an_invalid_setting_fails_with_the_server_log_in_the_error() {
    let node = PgNode::new("pg1");
    node.initdb().await;
    let mut config = node.config();
    config.parameters.insert("shared_buffers".into(), "plenty".into());
    node.ctl.write_config(&config).unwrap();

    let err = node.ctl.start(PG_TIMEOUT).await.expect_err("Postgres refuses shared_buffers = plenty");

    assert!(matches!(err, PgCtlError::Failed { .. }), "{err:?}");
    assert!(err.to_string().contains("invalid value for parameter \"shared_buffers\""), "{err}");
    assert!(!node.ctl.is_running());
    assert_eq!(facts(&node.ctl, &node.conn()).await.process, PgProcess::Stopped);
}

#[tokio::test]
async fn settings_check_refuses_what_a_start_would_and_leaves_the_files_alone() {
    let mut node = PgNode::new("pg1");
    let unchecked = node.ctl.check_config(&node.config()).await;
    assert!(matches!(unchecked, Err(PgCtlError::Refused(_))), "no data directory yet: {unchecked:?}");
    node.initdb().await;
    node.start(node.config()).await;
    let conf = node.ctl.data_dir.join("postgresql.conf");
    let written = std::fs::read_to_string(&conf).unwrap();

    let mut good = node.config();
    good.parameters.insert("work_mem".into(), "8MB".into());
    node.ctl.check_config(&good).await.expect("work_mem = 8MB is fine, on a running server too");
    for (name, value, said) in [
        ("shared_buffers", "plenty", r#"invalid value for parameter "shared_buffers": "plenty""#),
        ("work_mme", "8MB", r#"unrecognized configuration parameter "work_mme""#),
        ("max_connections", "-1", r#"-1 is outside the valid range for parameter "max_connections""#),
    ] {
        let mut bad = node.config();
        bad.parameters.insert(name.into(), value.into());
        let err = node.ctl.check_config(&bad).await.expect_err(name);
        assert!(matches!(err, PgCtlError::Refused(_)), "{err:?}");
        assert!(err.to_string().starts_with("Postgres refuses the settings: "), "{err}");
        assert!(err.to_string().contains(said), "{err}");
    }

    assert_eq!(std::fs::read_to_string(&conf).unwrap(), written, "postgresql.conf untouched");
    let leftovers: Vec<_> = std::fs::read_dir(&node.ctl.data_dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.contains("keel"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(node.ctl.is_running());
}

#[tokio::test]
async fn running_primary_is_probed_on_timeline_1_and_its_lsn_advances_with_writes() {
    let mut node = PgNode::new("pg1");
    node.initdb().await;
    node.start(node.config()).await;

    let before = facts(&node.ctl, &node.conn()).await;
    assert_eq!(before.process, PgProcess::RunningPrimary, "{before:#?}");
    assert_eq!(before.timeline, 1);
    assert!(before.write_lsn > 0);
    assert_eq!((before.receive_lsn, before.replay_lsn), (0, 0));
    assert!(before.upstream.is_none() && !before.streaming && before.replication.is_empty());
    assert_eq!(before.sync_standby_names, SyncNames::default());
    assert!(matches!(before.data, DataDir::Initialised(ref c) if c.state == ControlState::InProduction));

    sql(&node, "CREATE TABLE t (id int, pad text); INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g").await;
    let after = facts(&node.ctl, &node.conn()).await;
    assert!(after.write_lsn > before.write_lsn + 100_000, "{} -> {}", before.write_lsn, after.write_lsn);

    let refused = node.ctl.start(PG_TIMEOUT).await;
    assert!(matches!(refused, Err(PgCtlError::Refused(_))), "second start: {refused:?}");
    let wrong_port = ConnTarget { port: node.port.wrapping_add(1).max(1), ..node.conn() };
    let unreachable = facts(&node.ctl, &wrong_port).await;
    assert_eq!(unreachable.process, PgProcess::Starting, "a postmaster that does not answer is starting");

    node.ctl.stop(StopMode::Fast, PG_TIMEOUT).await.unwrap();
    let stopped = facts(&node.ctl, &node.conn()).await;
    assert_eq!(stopped.process, PgProcess::Stopped);
    assert!(matches!(stopped.data, DataDir::Initialised(ref c) if c.state == ControlState::ShutDown));
    assert!(stopped.write_lsn >= after.write_lsn, "the shutdown checkpoint is past the last write");
    node.ctl.stop(StopMode::Fast, PG_TIMEOUT).await.expect("stopping a stopped server is not an error");
}

/// The backend serving `observer`'s kept connection.
async fn backend_pid(observer: &mut Observer, node: &PgNode) -> i32 {
    let postmaster = node.ctl.postmaster_pid().expect("a running postmaster");
    let query = async |client: &tokio_postgres::Client| {
        let row = client.query_one("SELECT pg_backend_pid()", &[]).await;
        row.map(|r| r.get::<_, i32>(0)).map_err(|e| keel_runtime::pg::ProbeError::Query(e.to_string()))
    };
    observer.session().with(postmaster, query).await.expect("the kept connection answers")
}

#[tokio::test]
async fn an_observer_keeps_one_connection_across_loops_and_reads_pg_control_again_after_a_restart() {
    let mut node = PgNode::new("pg1");
    node.initdb().await;
    node.start(node.config()).await;
    let mut observer = Observer::new(node.conn());

    let first = observer.facts(&node.ctl).await;
    let backend = backend_pid(&mut observer, &node).await;
    for _ in 0..3 {
        let seen = observer.facts(&node.ctl).await;
        assert_eq!(seen.process, PgProcess::RunningPrimary);
        assert_eq!(seen.data, first.data);
        assert!(matches!(seen.data, DataDir::Initialised(ref c) if c.state == ControlState::InProduction));
        assert_eq!(seen.data, facts(&node.ctl, &node.conn()).await.data, "as a fresh observation sees it");
    }
    assert_eq!(backend_pid(&mut observer, &node).await, backend, "one connection for every observation");

    // An immediate stop leaves pg_control `in production`: read from disk
    // again, not remembered from the running server.
    node.ctl.stop(StopMode::Immediate, PG_TIMEOUT).await.unwrap();
    let crashed = observer.facts(&node.ctl).await;
    assert_eq!(crashed.process, PgProcess::Stopped);
    assert_eq!(crashed.data, DataDir::Initialised(node.ctl.controldata().await.unwrap().to_core()));

    node.start(node.config()).await;
    let restarted = observer.facts(&node.ctl).await;
    assert_eq!(restarted.process, PgProcess::RunningPrimary, "{restarted:#?}");
    assert_ne!(backend_pid(&mut observer, &node).await, backend, "a new postmaster, a new connection");
}

/// One story, because each step needs the previous one's cluster: clone,
/// stream, sync, promote, crash the old primary, recover, rewind, follow.
#[tokio::test]
async fn replica_syncs_and_is_promoted_then_the_crashed_old_primary_rewinds_and_follows_it() {
    let mut pg1 = PgNode::new("pg1");
    pg1.initdb().await;
    pg1.start(pg1.config()).await;
    sql(&pg1, "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)").await;

    // A base backup started as a standby of pg1 streams from it.
    let mut pg2 = PgNode::new("pg2");
    pg2.ctl.basebackup(&pg1.conninfo(), PG_TIMEOUT).await.unwrap();
    pg2.ctl.set_standby(true).unwrap();
    let mut pg2_standby = pg2.config();
    pg2_standby.upstream = Some(pg1.upstream());
    pg2.start(pg2_standby).await;
    let replica = until(&pg2, "streaming from pg1", |f| f.streaming).await;
    assert_eq!(replica.process, PgProcess::RunningReplica);
    // An observer kept from here to the promotion, as the agent keeps one.
    let mut pg2_observer = Observer::new(pg2.conn());
    let kept = pg2_observer.facts(&pg2.ctl).await;
    assert_eq!((kept.process, &kept.data), (PgProcess::RunningReplica, &replica.data));
    assert!(matches!(kept.data, DataDir::Initialised(ref c) if c.state == ControlState::InArchiveRecovery));
    assert_eq!(replica.upstream.as_deref(), Some("pg1"));
    assert_eq!(replica.timeline, 1);
    assert_eq!(replica.system_id(), facts(&pg1.ctl, &pg1.conn()).await.system_id());
    let primary =
        until(&pg1, "pg2 in pg_stat_replication", |f| f.replication.iter().any(|s| s.name == "pg2")).await;
    let standby = &primary.replication[0];
    assert!(standby.streaming && standby.sync_state == StandbySyncState::Async, "{standby:?}");

    // Naming pg2 in synchronous_standby_names makes it the sync standby.
    let mut pg1_config = pg1.config();
    pg1_config.sync_standby_names = SyncNames { members: ["pg2".to_owned()].into(), num: 1, quorum: false };
    pg1.ctl.write_config(&pg1_config).unwrap();
    pg1.ctl.reload().await.unwrap();
    let primary =
        until(&pg1, "pg2 sync", |f| f.replication.iter().any(|s| s.sync_state == StandbySyncState::Sync))
            .await;
    assert_eq!(primary.sync_standby_names, pg1_config.sync_standby_names);
    assert!(primary.replication[0].reply_age_ms < 5_000, "{:?}", primary.replication[0]);
    sql(&pg1, "INSERT INTO t SELECT generate_series(101, 200)").await;
    let pg1_lsn = facts(&pg1.ctl, &pg1.conn()).await.write_lsn;
    until(&pg2, "replayed pg1's last commit", |f| f.replay_lsn >= pg1_lsn).await;

    // Promotion starts timeline 2, whose history file has one switch.
    pg2.ctl.promote(PG_TIMEOUT).await.unwrap();
    write_timeline_origin(&pg2.ctl, 2, "pg2").unwrap();
    let new_primary = facts(&pg2.ctl, &pg2.conn()).await;
    assert_eq!(new_primary.process, PgProcess::RunningPrimary);
    assert_eq!(new_primary.timeline, 2);
    let [switch] = new_primary.history.as_slice() else { panic!("one switch: {:?}", new_primary.history) };
    assert_eq!((switch.timeline, switch.new_leader.as_deref()), (1, None));
    assert!(switch.fork_lsn >= pg1_lsn && switch.fork_lsn <= new_primary.write_lsn, "{switch:?}");
    assert_eq!(new_primary.timeline_origin.as_deref(), Some("pg2"));
    let kept = pg2_observer.facts(&pg2.ctl).await;
    assert_eq!((kept.process, kept.timeline), (PgProcess::RunningPrimary, 2));
    assert_eq!((&kept.data, &kept.history), (&new_primary.data, &new_primary.history));
    assert!(matches!(kept.data, DataDir::Initialised(ref c) if c.state == ControlState::InProduction));
    let fork_lsn = switch.fork_lsn;
    let cluster_history = vec![TimelineSwitch { timeline: 1, fork_lsn, new_leader: None }];

    // The old primary writes past the fork (without waiting for its former
    // sync standby), then is killed.
    sql(&pg1, "SET synchronous_commit = local; INSERT INTO t SELECT generate_series(201, 300)").await;
    pg1.ctl.stop(StopMode::Immediate, PG_TIMEOUT).await.unwrap();
    let crashed = pg1.ctl.controldata().await.unwrap();
    assert_eq!(crashed.state, ControlState::InProduction, "killed primary is unclean");

    // Crash recovery in single-user mode brings it to a clean shutdown,
    // whose checkpoint shows its WAL past the fork: it diverged.
    pg1.ctl.recover_crash(PG_TIMEOUT).await.unwrap();
    assert_eq!(pg1.ctl.controldata().await.unwrap().state, ControlState::ShutDown);
    let recovered = facts(&pg1.ctl, &pg1.conn()).await;
    assert_eq!(recovered.process, PgProcess::Stopped);
    assert_eq!(keel_core::divergence(&recovered, &cluster_history, Some(2)), Some(fork_lsn));

    // pg_rewind onto pg2, then it starts as pg2's standby on timeline 2.
    pg1.ctl.rewind(&pg2.conninfo(), PG_TIMEOUT).await.unwrap();
    pg1.ctl.set_standby(true).unwrap();
    let mut pg1_standby = pg1.config();
    pg1_standby.upstream = Some(pg2.upstream());
    pg1.start(pg1_standby).await;
    let follower = until(&pg1, "streaming from pg2", |f| f.streaming).await;
    assert_eq!(follower.process, PgProcess::RunningReplica);
    assert_eq!(follower.upstream.as_deref(), Some("pg2"));
    assert_eq!(follower.timeline, 2);
    assert_eq!(follower.history, cluster_history);
    assert_eq!(follower.timeline_origin.as_deref(), Some("pg2"), "pg_rewind copied keel's note");
    assert_eq!(keel_core::divergence(&follower, &cluster_history, Some(2)), None);
    assert_eq!(count_rows(&pg1).await, 200, "the rows written past the fork are gone");
    until(&pg2, "pg1 in pg_stat_replication", |f| {
        f.replication.iter().any(|s| s.name == "pg1" && s.streaming)
    })
    .await;
}

const AGENT_DATA_DIR: &str = "KEEL_TEST_AGENT_DATA_DIR";
const AGENT_SERVER_LOG: &str = "KEEL_TEST_AGENT_SERVER_LOG";

/// Rule 7: the test binary runs itself again as a stand-in agent
/// ([`agent_process_starting_postgres_for_the_parent_death_test`]), which
/// starts Postgres and waits; killing it with SIGKILL must stop Postgres.
#[tokio::test]
async fn postmaster_shuts_down_when_the_agent_that_started_it_is_killed() {
    let node = PgNode::new("orphan");
    node.initdb().await;
    node.ctl.write_config(&node.config()).unwrap();
    let agent = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "agent_process_starting_postgres_for_the_parent_death_test", "--nocapture"])
        .env(AGENT_DATA_DIR, &node.ctl.data_dir)
        .env(AGENT_SERVER_LOG, node.ctl.server_log.as_ref().expect("fixture sets a log"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run the stand-in agent");
    let mut agent = KillOnDrop(agent);
    let agent = &mut agent.0;
    let running = until(&node, "the agent's postmaster accepting connections", |f| {
        f.process == PgProcess::RunningPrimary
    })
    .await;
    assert_eq!(agent.try_wait().unwrap(), None, "the stand-in agent still runs; {running:?}");
    let postmaster = node.ctl.postmaster_pid().expect("postmaster pid");

    agent.kill().expect("SIGKILL the stand-in agent");
    agent.wait().expect("reap the stand-in agent");

    let killed = Instant::now();
    while node.ctl.is_running() {
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "postmaster {postmaster} outlived its agent by 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node.log().contains("received immediate shutdown request"), "{}", node.log());
    // Orphaned, it was reparented; an init that does not reap (as in some
    // containers) leaves a zombie, which runs nothing. The pid file goes
    // before the process has finished exiting: wait for the process too.
    let exited = |stat: &str| {
        let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
        matches!(state, None | Some('Z' | 'X'))
    };
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
        if exited(&stat) {
            break;
        }
        assert!(killed.elapsed() < Duration::from_secs(10), "postmaster {postmaster} is still alive: {stat}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Kills the stand-in agent (by PID) if the test fails before it does.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Not a test on its own: does nothing unless the test above runs it as
/// its stand-in agent, which starts Postgres and waits to be killed.
#[tokio::test]
async fn agent_process_starting_postgres_for_the_parent_death_test() {
    let (Some(data_dir), Some(server_log)) =
        (std::env::var_os(AGENT_DATA_DIR), std::env::var_os(AGENT_SERVER_LOG))
    else {
        return;
    };
    let ctl = pg_ctl(data_dir.as_ref(), server_log.as_ref());
    ctl.start(PG_TIMEOUT).await.expect("the stand-in agent starts Postgres");
    tokio::time::sleep(Duration::from_secs(60)).await;
    panic!("the stand-in agent was not killed within 60 s");
}
