//! The REST API's operations on a real three-node cluster (real agents,
//! etcd and PostgreSQL 15 on loopback): a switchover under a writer,
//! authentication, malformed bodies, and a `PATCH /config` round trip.
//! Requests have Patroni's shapes, as `patronictl` and `keelctl` send them.
//!
//! Needs the agent binary: `cargo build -p keel-runtime --bin keel`, then
//! `cargo test -p keel-tests --test api_ops -- --nocapture`.

use std::time::{Duration, Instant};

use keel_runtime::api::auth::header_value;
use keel_runtime::config::Auth;
use keel_tests::cluster::{ClusterOptions, KeelCluster};

/// initdb and two base backups, on two cores.
const BOOTSTRAP: Duration = Duration::from_secs(120);
/// A generous deadline for anything a switchover does.
const FAILOVER: Duration = Duration::from_secs(30);
/// An answer that needs no waiting.
const QUICK: Duration = Duration::from_secs(10);
/// Writes on the new primary the checks want to see.
const SETTLE: Duration = Duration::from_secs(2);

async fn healthy_three() -> (KeelCluster, String, Vec<String>) {
    let cluster = KeelCluster::start(3, ClusterOptions::default()).await;
    let (leader, _) = cluster.wait_streaming_replicas(2, BOOTSTRAP).await;
    cluster
        .wait_for(FAILOVER, "three running members", |v| {
            v.members.len() == 3 && v.members.values().all(|m| m.is_running())
        })
        .await;
    // By member name: while a base backup runs, pg_stat_replication also
    // lists its connection.
    let replicas = cluster.names().into_iter().filter(|n| *n != leader).collect();
    (cluster, leader, replicas)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_through_the_api_moves_the_leader_and_loses_no_acknowledged_write() {
    let (cluster, leader, replicas) = healthy_three().await;
    let candidate = replicas[0].clone();

    // Malformed bodies: 400, nothing written.
    for body in [r#"{"leader": "#, "[1]", r#"{"leader": 7}"#, "{}"] {
        let a =
            cluster.api_call(&leader, "POST", "/switchover", &[], Some(body), QUICK).await.expect("answer");
        assert_eq!(a.code, 400, "{body}: {}", a.body);
    }
    let a = cluster
        .api_call(&leader, "POST", "/switchover", &[], Some(r#"{"leader": "nobody"}"#), QUICK)
        .await
        .expect("answer");
    assert_eq!((a.code, a.body.as_str()), (412, "leader name does not match"));
    let view = cluster.view().await.expect("etcd");
    assert!(view.failover.is_none(), "{:?}", view.failover);

    // The status shows the server's real version (`server_version_num`).
    let status = cluster.api_call(&leader, "GET", "/patroni", &[], None, QUICK).await.expect("answer");
    let version = status.body.split("\"server_version\":").nth(1).and_then(|v| v.split([',', '}']).next());
    let version: u32 = version.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{}", status.body));
    assert!((150_000..160_000).contains(&version), "PostgreSQL 15: {}", status.body);

    // GET /config is the key as the bootstrapping node wrote it from
    // bootstrap.dcs: no defaults filled in, no keys of keel's (Patroni).
    let a = cluster.api_call(&leader, "GET", "/config", &[], None, QUICK).await.expect("answer");
    let shown: serde_json::Value = serde_json::from_str(&a.body).expect("JSON");
    let keys: Vec<&str> = shown.as_object().expect("an object").keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "loop_wait",
            "maximum_lag_on_failover",
            "postgresql",
            "retry_timeout",
            "synchronous_mode",
            "synchronous_mode_strict",
            "ttl"
        ],
        "{shown}"
    );
    // Pause and resume through PATCH, as patronictl does: `pause` is gone
    // afterwards, not `false`.
    for patch in [r#"{"pause": true}"#, r#"{"pause": null}"#] {
        let a = cluster.api_call(&leader, "PATCH", "/config", &[], Some(patch), QUICK).await.expect("answer");
        assert_eq!(a.code, 200, "{}", a.body);
    }
    let stored = cluster.config_key().await;
    assert!(stored.get("pause").is_none(), "{stored}");

    // PATCH /config round trip: set, read back from etcd and GET /config,
    // delete with null; an invalid patch changes nothing.
    let patch = r#"{"maximum_lag_on_failover": 2097152}"#;
    let a = cluster.api_call(&candidate, "PATCH", "/config", &[], Some(patch), QUICK).await.expect("answer");
    assert_eq!(a.code, 200, "{}", a.body);
    let view = cluster.view().await.expect("etcd");
    assert_eq!(view.config.as_ref().map(|c| c.maximum_lag_on_failover_bytes), Some(2_097_152));
    let bad = cluster
        .api_call(&candidate, "PATCH", "/config", &[], Some(r#"{"ttl": 1}"#), QUICK)
        .await
        .expect("answer");
    assert_eq!(bad.code, 400, "{}", bad.body);
    let view = cluster.view().await.expect("etcd");
    assert_eq!(view.config.as_ref().map(|c| c.ttl_ms), Some(5_000), "the invalid patch wrote nothing");
    let unset = r#"{"maximum_lag_on_failover": null}"#;
    let a = cluster.api_call(&leader, "PATCH", "/config", &[], Some(unset), QUICK).await.expect("answer");
    assert_eq!(a.code, 200, "{}", a.body);
    assert!(!a.body.contains("maximum_lag_on_failover"), "{}", a.body);
    let shown = cluster
        .wait_for(QUICK, "the default lag limit back in the config", |v| {
            v.config.as_ref().is_some_and(|c| c.maximum_lag_on_failover_bytes == 1_048_576)
        })
        .await;
    assert!(shown.config.is_some());

    // The switchover, with a writer running.
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == leader).await;
    tokio::time::sleep(SETTLE).await;
    let body = format!(r#"{{"leader": "{leader}", "candidate": "{candidate}"}}"#);
    let asked = std::time::Instant::now();
    let a = cluster.api_call(&replicas[1], "POST", "/switchover", &[], Some(&body), FAILOVER * 2).await;
    let answered = asked.elapsed();
    let a = a.expect("answer");
    assert_eq!(
        (a.code, a.body.as_str()),
        (200, format!("Successfully switched over to \"{candidate}\"").as_str()),
        "{}",
        cluster.node(&leader).log_tail(40)
    );
    let first = writer.wait_for_ack(FAILOVER, "a write on the new leader", |a| a.node == candidate).await;
    tokio::time::sleep(SETTLE).await;
    let log = writer.stop().await;
    assert_eq!(cluster.leader().await.as_deref(), Some(candidate.as_str()));
    let missing = cluster.missing_on(&log, &candidate).await;
    assert!(
        missing.is_empty(),
        "acknowledged writes missing on {candidate}: {missing:?}\n{}",
        log.summary(asked)
    );
    let overlaps = log.overlaps();
    assert!(overlaps.is_empty(), "two nodes accepted writes at once: {overlaps:#?}");
    let gap = log.longest_gap().expect("writes before and after");
    println!(
        "switchover {leader} -> {candidate}: API answered after {:.2} s; first write on {candidate} {:.2} s after \
         the request; longest write gap {:.3} s\n{}",
        answered.as_secs_f64(),
        first.acked_at.saturating_duration_since(asked).as_secs_f64(),
        gap.duration().as_secs_f64(),
        log.summary(asked)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_authentication_an_unauthenticated_switchover_gets_401_and_the_leader_stays() {
    let (cluster, leader, replicas) = healthy_three().await;
    // Turn authentication on through POST /reload, as an operator would.
    for node in cluster.nodes() {
        let yaml = std::fs::read_to_string(&node.config_path).expect("config");
        let yaml = yaml.replacen(
            "restapi:\n",
            "restapi:\n  authentication:\n    username: admin\n    password: s3cret\n",
            1,
        );
        std::fs::write(&node.config_path, yaml).expect("write config");
        let a = cluster.api_call(&node.name, "POST", "/reload", &[], None, QUICK).await.expect("answer");
        assert_eq!(a.code, 202, "{}: {}", node.name, a.body);
    }
    let body = format!(r#"{{"leader": "{leader}", "candidate": "{}"}}"#, replicas[0]);
    let wrong = header_value(&Auth { username: "admin".into(), password: "guess".into() });
    for headers in [vec![], vec![("Authorization", wrong.as_str())]] {
        for node in cluster.names() {
            let a = cluster
                .api_call(&node, "POST", "/switchover", &headers, Some(&body), QUICK)
                .await
                .expect("answer");
            assert_eq!(a.code, 401, "{node} {headers:?}: {}", a.body);
        }
    }
    let a = cluster.api_call(&leader, "DELETE", "/switchover", &[], None, QUICK).await.expect("answer");
    assert_eq!(a.code, 401);
    assert_eq!(cluster.api_code(&leader, "GET", "/patroni").await, Ok(200), "GETs stay open");
    // Two loops later nothing has moved.
    tokio::time::sleep(cluster.options().loop_wait() * 2 + Duration::from_millis(500)).await;
    let view = cluster.view().await.expect("etcd");
    assert!(view.failover.is_none(), "{:?}", view.failover);
    assert_eq!(view.leader_name(), Some(leader.as_str()));
    // The right credentials pass the check (and a malformed body is 400).
    let right = header_value(&Auth { username: "admin".into(), password: "s3cret".into() });
    let a = cluster
        .api_call(&leader, "POST", "/switchover", &[("Authorization", &right)], Some("{"), QUICK)
        .await
        .expect("answer");
    assert_eq!(a.code, 400, "{}", a.body);
}

#[test]
fn a_bad_certificate_path_stops_keel_at_startup_with_one_clear_error() {
    use keel_tests::cluster::{config_yaml, keel_bin, ConfigSpec};
    let dir = keel_tests::scratch::Scratch::new("api-tls");
    let options = ClusterOptions::default();
    let spec = ConfigSpec {
        options: &options,
        name: "pg1",
        pg_port: 5432,
        api_port: 8008,
        etcd_port: 2379,
        dir: dir.path(),
        bin_dir: std::path::Path::new("/usr/lib/postgresql/15/bin"),
    };
    let yaml = config_yaml(&spec).replacen("restapi:\n", "restapi:\n  certfile: /nonexistent/keel.pem\n", 1);
    let path = dir.path().join("keel.yml");
    std::fs::write(&path, yaml).expect("write config");
    let out = std::process::Command::new(keel_bin()).arg("--config").arg(&path).output().expect("keel runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains("restapi.certfile /nonexistent/keel.pem: "), "{text}");
}

/// Failsafe mode on through `PATCH /config`; etcd dies; the leader pings
/// its replicas' `POST /failsafe`, every one confirms, and it stays the
/// only writable primary well past its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failsafe_mode_keeps_the_primary_writable_through_an_etcd_outage() {
    let (mut cluster, leader, _) = healthy_three().await;
    let on = r#"{"failsafe_mode": true}"#;
    let a = cluster.api_call(&leader, "PATCH", "/config", &[], Some(on), QUICK).await.expect("answer");
    assert_eq!(a.code, 200, "{}", a.body);
    cluster
        .wait_for(FAILOVER, "every member in the failsafe key", |v| {
            v.failsafe.as_ref().is_some_and(|f| f.len() == 3)
                && v.config.as_ref().is_some_and(|c| c.failsafe_mode)
        })
        .await;
    // Each agent learns the setting at its next read of etcd: wait until
    // every node's GET /config (its last read) shows it.
    for node in cluster.names() {
        let since = std::time::Instant::now();
        loop {
            let a = cluster.api_call(&node, "GET", "/config", &[], None, QUICK).await.expect("answer");
            if a.body.contains("\"failsafe_mode\":true") {
                break;
            }
            assert!(since.elapsed() < FAILOVER, "{node} never saw failsafe_mode: {}", a.body);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // What the leader will send: replicas accept, the primary refuses.
    let ping = format!(r#"{{"name": "{leader}", "conn_url": "", "api_url": "", "slots": {{}}}}"#);
    for node in cluster.names() {
        let a = cluster.api_call(&node, "POST", "/failsafe", &[], Some(&ping), QUICK).await.expect("answer");
        let want = if node == leader { (500, "Running as a leader") } else { (200, "Accepted") };
        assert_eq!((a.code, a.body.as_str()), want, "{node}");
    }
    let writer = cluster.writer();
    writer.wait_for_ack(FAILOVER, "a first write", |a| a.node == leader).await;
    let outage = cluster.etcd_stop();
    let ttl = cluster.options().ttl();
    tokio::time::sleep(ttl * 3).await;
    let primary = cluster.api_code(&leader, "GET", "/primary").await;
    cluster.etcd_start();
    let log = writer.stop().await;
    let late = log.acks_on(&leader).filter(|a| a.sent_at >= outage + ttl * 2).count();
    println!(
        "failsafe: {late} writes acknowledged by {leader} more than 2 ttl into the outage\n{}",
        log.summary(outage)
    );
    assert!(log.overlaps().is_empty(), "two primaries: {:#?}", log.overlaps());
    assert!(log.acks.iter().all(|a| a.node == leader), "{}", log.summary(outage));
    assert!(
        late > 0,
        "{leader} stopped taking writes: {}\n{}",
        log.summary(outage),
        cluster.node(&leader).log_tail(30)
    );
    assert_eq!(primary, Ok(200), "{leader} /primary during the outage");
    cluster
        .wait_for(FAILOVER, "the same leader once etcd is back", |v| v.leader_name() == Some(leader.as_str()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reinitialize_and_scheduled_switchover_answer_with_what_happened() {
    let (cluster, leader, replicas) = healthy_three().await;
    let replica = &replicas[0];

    // Restart: the agent restarts Postgres and says so; a filter that
    // does not match changes nothing.
    let before = cluster.node(replica).postmaster_pid();
    let a = cluster.api_call(replica, "POST", "/restart", &[], Some(r#"{"role": "primary"}"#), QUICK).await;
    assert_eq!(a.map(|a| (a.code, a.body)), Ok((503, "restart conditions are not satisfied".into())));
    let a = cluster.api_call(replica, "POST", "/restart", &[], None, FAILOVER).await.expect("answer");
    assert_eq!((a.code, a.body.as_str()), (200, "restarted successfully"));
    let after = cluster.node(replica).postmaster_pid();
    assert!(after.is_some() && after != before, "a new postmaster: {before:?} -> {after:?}");

    // Reinitialize: refused on the leader, carried out on a replica.
    let a = cluster.api_call(&leader, "POST", "/reinitialize", &[], None, QUICK).await.expect("answer");
    assert_eq!((a.code, a.body.as_str()), (503, "I am the leader, can not reinitialize"));
    let a =
        cluster.api_call(replica, "POST", "/reinitialize", &[], Some(r#"{"force": true}"#), BOOTSTRAP).await;
    assert_eq!(a.map(|a| (a.code, a.body)), Ok((200, "reinitialized successfully".into())));
    cluster.wait_streaming_replicas(2, BOOTSTRAP).await;

    // A scheduled switchover is written, shown, left alone, and deleted.
    let body = format!(r#"{{"leader": "{leader}", "scheduled_at": "2999-01-01T00:00:00+00:00"}}"#);
    let a = cluster.api_call(replica, "POST", "/switchover", &[], Some(&body), QUICK).await.expect("answer");
    assert_eq!((a.code, a.body.as_str()), (202, "Switchover scheduled"));
    let view = cluster.wait_for(QUICK, "the scheduled request", |v| v.failover.is_some()).await;
    assert_eq!(view.failover.and_then(|f| f.leader), Some(leader.clone()));
    tokio::time::sleep(cluster.options().loop_wait() * 2).await;
    assert_eq!(cluster.leader().await, Some(leader.clone()), "not due yet");
    let a = cluster.api_call(&leader, "DELETE", "/switchover", &[], None, QUICK).await.expect("answer");
    assert_eq!((a.code, a.body.as_str()), (200, "scheduled switchover deleted"));
    let a = cluster.api_call(&leader, "DELETE", "/switchover", &[], None, QUICK).await.expect("answer");
    assert_eq!((a.code, a.body.as_str()), (404, "no switchover is scheduled"));
    assert!(cluster.view().await.expect("etcd").failover.is_none());

    // A pending and a scheduled restart reach the replica's member key:
    // the leader's GET /cluster shows them (Patroni's `cluster_as_json`),
    // and the deleted schedule goes away again.
    cluster.sql(replica, "ALTER SYSTEM SET shared_buffers = '17MB'").await.expect("ALTER SYSTEM");
    cluster.sql(replica, "SELECT pg_reload_conf()").await.expect("reload");
    let body = r#"{"schedule": "2999-01-01T00:00:00+00:00"}"#;
    let a = cluster.api_call(replica, "POST", "/restart", &[], Some(body), QUICK).await.expect("answer");
    assert_eq!((a.code, a.body.as_str()), (202, "Restart scheduled"));
    let shows = |body: &str| {
        body.contains(r#""pending_restart":true"#)
            && body.contains(r#""new_value":"17MB""#)
            && body.contains(r#""scheduled_restart":{"schedule":"2999-01-01T00:00:00"#)
    };
    let started = Instant::now();
    let cluster_json = wait_cluster_json(&cluster, &leader, started, shows).await;
    println!("pending and scheduled restart in /cluster after {:.2} s", started.elapsed().as_secs_f64());
    assert!(
        cluster_json.contains(r#""pending_restart_reason":{"shared_buffers":{"new_value":"17MB","#),
        "{cluster_json}"
    );
    assert_eq!(cluster_json.matches(r#""state":"streaming""#).count(), 2, "{cluster_json}");
    let a = cluster.api_call(replica, "DELETE", "/restart", &[], None, QUICK).await.expect("answer");
    assert_eq!(a.code, 200, "{}", a.body);
    wait_cluster_json(&cluster, &leader, Instant::now(), |body| !body.contains("scheduled_restart")).await;
    cluster.sql(replica, "ALTER SYSTEM RESET shared_buffers").await.expect("ALTER SYSTEM");
    cluster.sql(replica, "SELECT pg_reload_conf()").await.expect("reload");
}

/// `node`'s `GET /cluster` once `until` holds of its body (the member keys
/// change at the members' next loops).
async fn wait_cluster_json(
    cluster: &KeelCluster,
    node: &str,
    started: Instant,
    until: impl Fn(&str) -> bool,
) -> String {
    loop {
        let a = cluster.api_call(node, "GET", "/cluster", &[], None, QUICK).await.expect("answer");
        if until(&a.body) {
            return a.body;
        }
        assert!(started.elapsed() < FAILOVER, "GET /cluster never showed it: {}", a.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
