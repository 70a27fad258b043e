//! keelctl end to end: the built `keelctl` binary against a real
//! three-node cluster (real etcd, real PostgreSQL 15, real agents), as an
//! operator runs it: `list` (snapshot), `edit-config`, `pause`/`resume
//! --wait`, `switchover`, `history`, `topology`, and its errors.
//!
//! Needs both binaries: `cargo build -p keel-runtime --bins`, then
//! `cargo test -p keel-tests --test keelctl -- --nocapture`.

use std::time::{Duration, Instant};

use keel_core::{ClusterView, MemberState};
use keel_tests::cluster::{ClusterOptions, KeelCluster};
use keel_tests::ctl::{keelctl, CtlOutput};

/// initdb and two base backups on two cores.
const BOOTSTRAP: Duration = Duration::from_secs(120);
/// Agents read etcd every loop_wait (1 s); this bounds any reaction.
const REACT: Duration = Duration::from_secs(30);
/// The old leader rewinds and follows.
const REJOIN: Duration = Duration::from_secs(120);
const SCOPE: &str = "keelctl-e2e";

/// `keelctl -c <pg1's config> <args>`.
async fn ctl(cluster: &KeelCluster, args: &[&str], input: &str) -> CtlOutput {
    let config = cluster.node("pg1").config_path.to_string_lossy().into_owned();
    let mut argv = vec!["-c", config.as_str()];
    argv.extend_from_slice(args);
    keelctl(&argv, input).await
}

/// What changes from run to run, replaced by letters so that the table
/// keeps its layout: the system identifier, the Postgres ports, and the
/// values of the position and lag columns (L and N).
fn redact(text: &str, cluster: &KeelCluster, system_id: &str) -> String {
    let mut text = text.replace(system_id, &"N".repeat(system_id.len()));
    for node in cluster.nodes() {
        let port = node.pg_port.to_string();
        text = text.replace(&format!(":{port}"), &format!(":{}", "P".repeat(port.len())));
    }
    let lines = text.lines().map(|line| {
        let mut cells: Vec<String> = line.split('|').map(str::to_owned).collect();
        if cells.len() > 10 && cells[1].trim().starts_with("pg") {
            for (at, letter) in [(6, "L "), (7, "N "), (8, "L "), (9, "N ")] {
                if !cells[at].trim().is_empty() {
                    let width = cells[at].len();
                    cells[at] = format!("{letter:>width$}");
                }
            }
        }
        cells.join("|")
    });
    lines.map(|l| format!("{l}\n")).collect()
}

fn all_running_on(view: &ClusterView, timeline: u32) -> bool {
    view.members.len() == 3
        && view.members.values().all(|m| m.state == MemberState::Running && m.timeline == timeline)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keelctl_operates_a_three_node_cluster() {
    // Staggered so that pg1 bootstraps: the snapshot names the leader.
    let options =
        ClusterOptions { scope: SCOPE.into(), stagger: Duration::from_secs(3), ..ClusterOptions::default() };
    let cluster = KeelCluster::start(3, options).await;
    let (leader, _) = cluster.wait_streaming_replicas(2, BOOTSTRAP).await;
    assert_eq!(leader, "pg1", "the first node started bootstraps");
    let view = cluster.wait_for(BOOTSTRAP, "three running members", |v| all_running_on(v, 1)).await;
    let system_id = view.initialize.clone().expect("initialized");

    // A member key says `streaming` from the replica's first loop after its
    // WAL receiver connects, a loop after the leader sees it stream.
    let started = Instant::now();
    loop {
        let json = ctl(&cluster, &["list", "-f", "json"], "").await;
        if json.ok().matches(r#""State": "streaming""#).count() == 2 {
            break;
        }
        assert!(started.elapsed() < REACT, "the replicas' keys never said streaming: {}", json.stdout);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("member keys report both replicas streaming after {:.2} s", started.elapsed().as_secs_f64());

    // list: the table, and the same rows as JSON.
    let out = ctl(&cluster, &["list"], "").await;
    insta::assert_snapshot!("list", redact(out.ok(), &cluster, &system_id));
    let json = ctl(&cluster, &["list", "-f", "json"], "").await;
    assert_eq!(json.ok().matches(r#""Role": "Leader""#).count(), 1, "{}", json.stdout);
    assert_eq!(json.ok().matches(r#""Role": "Replica""#).count(), 2, "{}", json.stdout);

    // --dcs-url and --scope instead of the file; a refused switchover is
    // one line on stderr and exit code 1.
    let etcd = cluster.etcd().endpoint.clone();
    let out =
        keelctl(&["--dcs-url", &etcd, "--scope", SCOPE, "switchover", "--candidate", "pg9", "--force"], "")
            .await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        "keelctl: Member pg9 does not exist in cluster keelctl-e2e or is tagged as nofailover\n"
    );

    // edit-config: a round trip through etcd, and a refused invalid edit.
    let out = ctl(&cluster, &["edit-config", "--set", "ttl=6", "--force"], "").await;
    assert!(out.ok().contains("-ttl: 5\n+ttl: 6\n"), "{}", out.stdout);
    assert!(out.ok().ends_with("Configuration changed\n"), "{}", out.stdout);
    let view = cluster.view().await.expect("etcd answers");
    assert_eq!(view.config.as_ref().map(|c| c.ttl_ms), Some(6000));
    assert!(ctl(&cluster, &["show-config"], "").await.ok().contains("ttl: 6\n"));
    let out = ctl(&cluster, &["edit-config", "--set", "ttl=3", "--force"], "").await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stderr,
        "keelctl: the configuration is invalid, nothing written: ttl: loop_wait + 2*retry_timeout must be <= ttl \
         (1 + 2*2 > 3)\n"
    );
    let view = cluster.view().await.expect("etcd answers");
    assert_eq!(view.config.as_ref().map(|c| c.ttl_ms), Some(6000), "the refused edit changed nothing");

    // pause / resume --wait: every member key follows.
    for (command, word) in [("pause", "paused"), ("resume", "resumed")] {
        let started = Instant::now();
        let out = ctl(&cluster, &[command, "--wait"], "").await;
        assert_eq!(
            out.ok(),
            format!("'{command}' request sent, waiting until it is recognized by all nodes\nSuccess: cluster management is {word}\n")
        );
        println!("{command} --wait: every member reported it after {:.2} s", started.elapsed().as_secs_f64());
        let list = ctl(&cluster, &["list"], "").await;
        assert_eq!(list.ok().contains(" Maintenance mode: on\n"), command == "pause", "{}", list.stdout);
    }

    // switchover: pg2 takes over; pg1 comes back as a replica.
    let started = Instant::now();
    let out = ctl(&cluster, &["switchover", "--candidate", "pg2", "--force"], "").await;
    let stdout = out.ok().to_owned();
    let path = if stdout.contains("falling back to etcd") {
        "the failover key in etcd (REST fallback)"
    } else {
        "pg1's REST API (POST /switchover)"
    };
    println!("switchover through {path} returned after {:.2} s:\n{stdout}", started.elapsed().as_secs_f64());
    cluster.wait_for(REACT, "pg2 to lead", |v| v.leader_name() == Some("pg2")).await;
    cluster.wait_recovery_state("pg1", true, REJOIN).await;
    let view = cluster
        .wait_for(REJOIN, "all members on timeline 2 with its history", |v| {
            all_running_on(v, 2) && !v.history.is_empty()
        })
        .await;
    println!(
        "switchover: pg2 leads, all members running on timeline 2 after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(view.failover, None, "the request was cleared");

    // history and topology after it.
    let history = ctl(&cluster, &["history"], "").await;
    let line = history
        .ok()
        .lines()
        .find(|l| l.starts_with("|  1 |"))
        .unwrap_or_else(|| panic!("{}", history.stdout));
    assert!(line.trim_end().ends_with("| pg2        |"), "{line}");
    let topology = ctl(&cluster, &["topology"], "").await;
    let members: Vec<&str> =
        topology.ok().lines().filter_map(|l| l.split('|').nth(1)).map(str::trim).skip(1).collect();
    assert_eq!(members, ["pg2", "+ pg1", "+ pg3"], "{}", topology.stdout);

    // restart and reinit through the members' REST API.
    let started = Instant::now();
    let out = ctl(&cluster, &["restart", SCOPE, "pg3", "--force"], "").await;
    assert_eq!(out.ok(), "Success: restart on member pg3\n");
    println!("restart pg3: answered after {:.2} s", started.elapsed().as_secs_f64());
    let out = ctl(&cluster, &["reinit", "pg2", "--force"], "").await;
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (Some(1), "keelctl: pg2 is the leader: it can not be reinitialized\n")
    );
    let started = Instant::now();
    let out = ctl(&cluster, &["reinit", "pg3", "--force"], "").await;
    assert_eq!(out.ok(), "Success: reinitialize for member pg3\n");
    println!("reinit pg3: answered after {:.2} s", started.elapsed().as_secs_f64());
    let (leader, replicas) = cluster.wait_streaming_replicas(2, REJOIN).await;
    assert_eq!((leader.as_str(), replicas.len()), ("pg2", 2), "{replicas:?}");

    // restapi.authentication on (the files, then POST /reload): keelctl
    // sends the file's credentials; without a file it has none and gets 401.
    for node in cluster.nodes() {
        let yaml = std::fs::read_to_string(&node.config_path).expect("config");
        let auth = "restapi:\n  authentication:\n    username: admin\n    password: s3cret\n";
        std::fs::write(&node.config_path, yaml.replacen("restapi:\n", auth, 1)).expect("write config");
        let reload = cluster.api_call(&node.name, "POST", "/reload", &[], None, Duration::from_secs(5)).await;
        assert_eq!(reload.as_ref().map(|a| a.code), Ok(202), "{}: {reload:?}", node.name);
    }
    let out = keelctl(&["--dcs-url", &etcd, "--scope", SCOPE, "restart", "pg3", "--force"], "").await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(out.stdout.starts_with("Failed: restart for member pg3, status code=401, ("), "{out:?}");
    assert_eq!(out.stderr, "keelctl: restart failed on pg3\n");
    let out = ctl(&cluster, &["restart", "pg3", "--force"], "").await;
    assert_eq!(out.ok(), "Success: restart on member pg3\n");
    let out = ctl(&cluster, &["reload", "--role", "replica", "--force"], "").await;
    let reloaded = "Reload request received for member {} and will be processed within 1 seconds\n";
    assert_eq!(out.ok(), ["pg1", "pg3"].map(|m| reloaded.replace("{}", m)).concat());

    // A switchover scheduled far ahead through the leader's API, shown
    // by list, then flushed.
    let out = ctl(
        &cluster,
        &["switchover", "--candidate", "pg1", "--scheduled", "2099-01-01T00:00+00:00", "--force"],
        "",
    )
    .await;
    assert!(out.ok().contains(" Switchover scheduled\n"), "{}", out.stdout);
    assert!(
        out.ok().contains(" Switchover scheduled at: 2099-01-01T00:00:00Z\n                    from: pg2\n"),
        "{}",
        out.stdout
    );
    let out = ctl(&cluster, &["flush", SCOPE, "switchover"], "").await;
    assert!(out.ok().starts_with("Success: "), "{}", out.stdout);
    assert_eq!(cluster.view().await.expect("etcd answers").failover, None);
    assert_eq!(ctl(&cluster, &["flush", "switchover"], "").await.ok(), "No pending scheduled switchover\n");

    // A scheduled restart, then cancelled.
    let out =
        ctl(&cluster, &["restart", "pg3", "--scheduled", "2099-01-01T00:00+00:00", "--force"], "").await;
    assert_eq!(out.ok(), "Success: restart scheduled on member pg3\n");
    // pg3 publishes it in its member key at its next loop: list shows it.
    let started = Instant::now();
    let list = loop {
        let list = ctl(&cluster, &["list"], "").await;
        if list.ok().contains(" Scheduled restart ") {
            break list.stdout;
        }
        assert!(started.elapsed() < REACT, "list never showed the scheduled restart:\n{}", list.stdout);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let row = list.lines().find(|l| l.starts_with("| pg3 ")).unwrap_or_default();
    assert!(row.contains("| 2099-01-01T00:00:00"), "{list}");
    let out = ctl(&cluster, &["flush", SCOPE, "pg3", "restart", "--force"], "").await;
    assert_eq!(out.ok(), "Success: flush scheduled restart for member pg3\n");
    let out = ctl(&cluster, &["flush", "pg3", "restart", "--force"], "").await;
    assert_eq!(out.ok(), "No scheduled restart on member pg3\n");
}
