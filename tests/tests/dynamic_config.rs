//! The dynamic configuration's Postgres settings (etcd's `config` key) on
//! a real three-node cluster (real agents, etcd and PostgreSQL 15 on
//! loopback), as Patroni applies them on every node: a parameter a reload
//! changes, one that needs a restart (pending restart until then), a local
//! value that wins over the dynamic one, a value Postgres refuses (the last
//! good settings stay), and `pg_hba` (a line that changes who may connect).
//!
//! Needs both binaries: `cargo build -p keel-runtime --bins`, then
//! `cargo test -p keel-tests --test dynamic_config -- --nocapture`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_tests::cluster::writer::error_text;
use keel_tests::cluster::{ClusterOptions, KeelCluster};
use keel_tests::ctl::keelctl;
use serde_json::Value;

/// initdb and two base backups, on two cores.
const BOOTSTRAP: Duration = Duration::from_secs(120);
/// Agents read etcd every loop_wait (1 s); this bounds any reaction.
const REACT: Duration = Duration::from_secs(30);
/// An answer that needs no waiting.
const QUICK: Duration = Duration::from_secs(10);
/// A restart of every member, one after the other.
const RESTART: Duration = Duration::from_secs(120);
const SCOPE: &str = "dynamic-config-e2e";
/// The `pg_hba` the cluster starts with (`bootstrap.dcs`).
const HBA: [&str; 3] =
    ["local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"];

/// Polls `check` every 200 ms until it holds; panics after `timeout` with
/// `what` and the last answer.
async fn wait_until(timeout: Duration, what: &str, check: impl AsyncFn() -> Result<(), String>) {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}; last: {last}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `SHOW name` on `node`.
async fn show(cluster: &KeelCluster, node: &str, name: &str) -> Result<String, String> {
    let rows = cluster.sql(node, &format!("SHOW {name}")).await?;
    rows.first()
        .and_then(|r| r.first())
        .cloned()
        .flatten()
        .ok_or_else(|| format!("{node}: no value of {name}"))
}

async fn wait_setting(cluster: &KeelCluster, node: &str, name: &str, value: &str) {
    let what = format!("{node}: {name} = {value}");
    wait_until(REACT, &what, async || match show(cluster, node, name).await? {
        shown if shown == value => Ok(()),
        shown => Err(format!("{name} = {shown}")),
    })
    .await;
}

/// `GET /patroni` on `node`, as JSON.
async fn status(cluster: &KeelCluster, node: &str) -> Result<Value, String> {
    let answer = cluster.api_call(node, "GET", "/patroni", &[], None, QUICK).await?;
    serde_json::from_str(&answer.body).map_err(|e| format!("{node}: /patroni: {e}: {}", answer.body))
}

async fn pending_restart(cluster: &KeelCluster, node: &str) -> Result<bool, String> {
    Ok(status(cluster, node).await?["pending_restart"] == Value::Bool(true))
}

fn postmasters(cluster: &KeelCluster) -> BTreeMap<String, Option<u32>> {
    cluster.nodes().iter().map(|n| (n.name.clone(), n.postmaster_pid())).collect()
}

async fn patch_config(cluster: &KeelCluster, node: &str, patch: &str) {
    let answer = cluster.api_call(node, "PATCH", "/config", &[], Some(patch), QUICK).await.expect("answer");
    assert_eq!(answer.code, 200, "PATCH /config {patch}: {}", answer.body);
}

/// Connects to `node` as `user` (trusted on loopback unless pg_hba says
/// otherwise) and runs `SELECT 1`.
async fn connect_as(cluster: &KeelCluster, node: &str, user: &str) -> Result<(), String> {
    let mut config = tokio_postgres::Config::new();
    config.host("127.0.0.1").port(cluster.node(node).pg_port).user(user).dbname("postgres");
    config.connect_timeout(QUICK);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| error_text(&e))?;
    tokio::spawn(connection);
    client.simple_query("SELECT 1").await.map(drop).map_err(|e| error_text(&e))
}

/// `keelctl --dcs-url … --scope … <args>`.
async fn ctl(cluster: &KeelCluster, args: &[&str]) -> String {
    let etcd = cluster.etcd().endpoint.clone();
    let mut argv = vec!["--dcs-url", etcd.as_str(), "--scope", SCOPE];
    argv.extend_from_slice(args);
    keelctl(&argv, "").await.ok().to_owned()
}

/// The members `keelctl list` marks as pending a restart.
async fn listed_pending(cluster: &KeelCluster) -> Vec<String> {
    let json = ctl(cluster, &["list", "-f", "json"]).await;
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let pending = rows.iter().filter(|r| r["Pending restart"] == "*");
    pending.map(|r| r["Member"].as_str().unwrap_or_default().to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_postgresql_settings_are_applied_on_every_node() {
    let mut node_parameters = BTreeMap::new();
    node_parameters.insert("pg3".to_owned(), vec![("statement_timeout".to_owned(), "'42s'".to_owned())]);
    let options = ClusterOptions {
        scope: SCOPE.into(),
        stagger: Duration::from_secs(3),
        local_pg_hba: false,
        node_parameters,
        ..ClusterOptions::default()
    };
    let cluster = KeelCluster::start(3, options).await;
    let (leader, _) = cluster.wait_streaming_replicas(2, BOOTSTRAP).await;
    // A base backup's WAL stream counts as streaming too.
    cluster
        .wait_for(BOOTSTRAP, "three running members", |v| {
            v.members.len() == 3 && v.members.values().all(|m| m.is_running())
        })
        .await;
    let names = cluster.names();
    let started_with = postmasters(&cluster);
    for node in &names {
        assert_eq!(show(&cluster, node, "work_mem").await.as_deref(), Ok("4MB"), "{node}: Postgres' default");
    }

    // A parameter a reload applies: every node, no restart. pg3's file
    // sets statement_timeout, which wins over the dynamic value there.
    let patch = r#"{"postgresql": {"parameters": {"work_mem": "8MB", "statement_timeout": "5s"}}}"#;
    patch_config(&cluster, &leader, patch).await;
    let patched = Instant::now();
    for node in &names {
        wait_setting(&cluster, node, "work_mem", "8MB").await;
    }
    println!("work_mem = 8MB on every node {:.2} s after PATCH /config", patched.elapsed().as_secs_f64());
    for (node, expected) in [("pg1", "5s"), ("pg2", "5s"), ("pg3", "42s")] {
        assert_eq!(show(&cluster, node, "statement_timeout").await.as_deref(), Ok(expected), "{node}");
    }
    assert_eq!(postmasters(&cluster), started_with, "a reload, no restart");
    for node in &names {
        assert_eq!(pending_restart(&cluster, node).await, Ok(false), "{node}");
    }

    // A parameter that needs a restart, through keelctl edit-config:
    // pending restart on every node (REST status and keelctl list) until
    // `keelctl restart --pending`, which applies it and clears the flag.
    let out = ctl(&cluster, &["edit-config", "--pg", "shared_buffers=64MB", "--force"]).await;
    assert!(out.ends_with("Configuration changed\n"), "{out}");
    for node in &names {
        wait_until(REACT, &format!("{node}: pending restart in /patroni"), async || {
            let status = status(&cluster, node).await?;
            let reason = &status["pending_restart_reason"]["shared_buffers"];
            match (&status["pending_restart"], &reason["old_value"], &reason["new_value"]) {
                (Value::Bool(true), old, new) if old == "128MB" && new == "64MB" => Ok(()),
                _ => Err(status.to_string()),
            }
        })
        .await;
    }
    wait_until(REACT, "keelctl list: every member pending a restart", async || {
        match listed_pending(&cluster).await {
            pending if pending == names => Ok(()),
            pending => Err(format!("{pending:?}")),
        }
    })
    .await;
    // The leader's /cluster shows the member keys as of its last loop.
    wait_until(REACT, "/cluster: every member pending a restart", async || {
        let answer = cluster.api_call(&leader, "GET", "/cluster", &[], None, QUICK).await?;
        let shown: Value = serde_json::from_str(&answer.body).map_err(|e| e.to_string())?;
        let members = shown["members"].as_array().cloned().unwrap_or_default();
        match members.iter().filter(|m| m["pending_restart"] == true).count() {
            3 => Ok(()),
            _ => Err(shown.to_string()),
        }
    })
    .await;
    for node in &names {
        assert_eq!(show(&cluster, node, "shared_buffers").await.as_deref(), Ok("128MB"), "{node}");
    }
    assert_eq!(postmasters(&cluster), started_with, "nothing restarted by itself");
    let out = ctl(&cluster, &["restart", SCOPE, "--pending", "--force"]).await;
    assert_eq!(out.lines().filter(|l| l.starts_with("Success: restart on member")).count(), 3, "{out}");
    for node in &names {
        wait_setting(&cluster, node, "shared_buffers", "64MB").await;
        wait_until(RESTART, &format!("{node}: no pending restart"), async || {
            match pending_restart(&cluster, node).await? {
                false => Ok(()),
                true => Err("still pending".into()),
            }
        })
        .await;
    }
    wait_until(REACT, "keelctl list: nobody pending a restart", async || {
        match listed_pending(&cluster).await {
            pending if pending.is_empty() => Ok(()),
            pending => Err(format!("{pending:?}")),
        }
    })
    .await;
    let restarted = postmasters(&cluster);
    for node in &names {
        assert_ne!(restarted[node], started_with[node], "{node} restarted");
        assert_eq!(show(&cluster, node, "work_mem").await.as_deref(), Ok("8MB"), "{node}");
    }

    // A value Postgres refuses: a clear error in every agent's log, and
    // nothing else changes: the old value in force, no restart, the files
    // still start Postgres (a replica restarted), the primary writable.
    patch_config(&cluster, &leader, r#"{"postgresql": {"parameters": {"work_mem": "banana"}}}"#).await;
    let refusal = r#"invalid value for parameter "work_mem": "banana""#;
    for node in cluster.nodes() {
        wait_until(REACT, &format!("{}: the refusal in the agent's log", node.name), async || {
            let log = node.log();
            let line = log.lines().find(|l| l.contains("dynamic configuration not applied"));
            match line {
                Some(line) if line.contains(refusal) => Ok(()),
                _ => Err(node.log_tail(5)),
            }
        })
        .await;
        let conf = std::fs::read_to_string(node.data_dir.join("postgresql.conf")).expect("postgresql.conf");
        assert!(conf.contains("work_mem = '8MB'") && !conf.contains("banana"), "{}: {conf}", node.name);
    }
    for node in &names {
        assert_eq!(show(&cluster, node, "work_mem").await.as_deref(), Ok("8MB"), "{node}");
        assert_eq!(pending_restart(&cluster, node).await, Ok(false), "{node}");
    }
    assert_eq!(postmasters(&cluster), restarted, "nothing restarted");
    cluster
        .sql(&leader, "CREATE TABLE after_refusal (id int); INSERT INTO after_refusal VALUES (1)")
        .await
        .unwrap();
    let replica = names.iter().find(|n| **n != leader).expect("a replica").clone();
    let out = ctl(&cluster, &["restart", SCOPE, &replica, "--force"]).await;
    assert_eq!(out, format!("Success: restart on member {replica}\n"));
    wait_setting(&cluster, &replica, "work_mem", "8MB").await;
    assert_ne!(cluster.node(&replica).postmaster_pid(), restarted[&replica], "{replica} restarted");
    // A good value after the refused one is applied.
    patch_config(&cluster, &leader, r#"{"postgresql": {"parameters": {"work_mem": "16MB"}}}"#).await;
    for node in &names {
        wait_setting(&cluster, node, "work_mem", "16MB").await;
    }

    // pg_hba from the dynamic configuration: a first line that rejects one
    // user, on every node; then a line Postgres cannot parse, refused, the
    // last good file staying in force.
    cluster.sql(&leader, "CREATE ROLE keel_denied LOGIN").await.unwrap();
    for node in &names {
        wait_until(REACT, &format!("{node}: keel_denied may connect"), async || {
            connect_as(&cluster, node, "keel_denied").await
        })
        .await;
    }
    let hba = |first: &str| {
        let lines: Vec<String> = std::iter::once(first).chain(HBA).map(|l| format!("{l:?}")).collect();
        format!(r#"{{"postgresql": {{"pg_hba": [{}]}}}}"#, lines.join(", "))
    };
    patch_config(&cluster, &leader, &hba("host all keel_denied 127.0.0.1/32 reject")).await;
    for node in &names {
        wait_until(REACT, &format!("{node}: keel_denied rejected"), async || {
            match connect_as(&cluster, node, "keel_denied").await {
                Err(e) if e.contains("pg_hba.conf rejects connection") => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        connect_as(&cluster, node, "postgres").await.expect("postgres still connects");
    }
    patch_config(&cluster, &leader, &hba("host all all 1.2.3.4/33 trust")).await;
    for node in cluster.nodes() {
        wait_until(REACT, &format!("{}: the pg_hba refusal in the agent's log", node.name), async || {
            let log = node.log();
            let mut refused = log.lines().filter(|l| l.contains("dynamic configuration not applied"));
            match refused.next_back() {
                Some(line)
                    if line.contains(r#"pg_hba.conf line 2: invalid CIDR mask in address "1.2.3.4/33""#) =>
                {
                    Ok(())
                }
                _ => Err(node.log_tail(5)),
            }
        })
        .await;
        let file = std::fs::read_to_string(node.data_dir.join("pg_hba.conf")).expect("pg_hba.conf");
        assert!(file.contains("keel_denied") && !file.contains("/33"), "{}: {file}", node.name);
        let denied = connect_as(&cluster, &node.name, "keel_denied").await;
        assert!(denied.as_ref().is_err_and(|e| e.contains("rejects")), "{}: {denied:?}", node.name);
    }
    let log = cluster.node(&leader).log();
    println!("{leader}'s agent on the dynamic configuration:");
    for line in log.lines().filter(|l| l.contains("dynamic configuration")) {
        println!("  {line}");
    }
}
