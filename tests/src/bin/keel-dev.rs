//! A local keel cluster to try: etcd, three keel agents (PostgreSQL 15,
//! synchronous mode) and HAProxy with the guide's `haproxy.cfg`, all on
//! loopback in a temporary directory, with the same harness as the
//! end-to-end tests. Prints how to connect; Ctrl-C (or SIGTERM) stops
//! every process it started, by PID, and checks that none is left.
//!
//!     cargo build -p keel-runtime --bin keel
//!     cargo run -p keel-tests --bin keel-dev [-- --profile guide]

use std::path::Path;
use std::time::Duration;

use clap::Parser;
use keel_tests::bench::Profile;
use keel_tests::cluster::{procs, ClusterOptions, KeelCluster, NAMESPACE};
use keel_tests::haproxy::{CheckTiming, Haproxy};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(name = "keel-dev", about = "a local keel cluster with etcd and HAProxy, until Ctrl-C")]
struct Args {
    /// `fast` (ttl 5, loop_wait 1, retry_timeout 2) or `guide` (ttl 30,
    /// loop_wait 10, retry_timeout 10).
    #[arg(long, default_value = "fast")]
    profile: String,
    /// Asynchronous replication instead of `synchronous_mode: true`.
    #[arg(long)]
    no_sync: bool,
}

const SCOPE: &str = "keel-dev";

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let profile = match Profile::by_name(&args.profile) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("keel-dev: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if std::env::var_os("KEEL_BIN").is_none() {
        if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_owned)) {
            std::env::set_var("KEEL_BIN", dir.join("keel"));
        }
    }
    let keel = std::path::PathBuf::from(std::env::var_os("KEEL_BIN").unwrap_or_default());
    if !keel.exists() {
        eprintln!(
            "keel-dev: no keel agent at {}: `cargo build -p keel-runtime --bin keel` first (or set KEEL_BIN)",
            keel.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(profile, !args.no_sync))
}

async fn run(profile: Profile, synchronous_mode: bool) -> std::process::ExitCode {
    // Listen for the signals before anything starts: a Ctrl-C during the
    // bootstrap still tears down.
    let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("keel-dev: cannot listen for signals: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let options = ClusterOptions {
        scope: SCOPE.into(),
        synchronous_mode,
        ttl_s: profile.ttl_s,
        loop_wait_s: profile.loop_wait_s,
        retry_timeout_s: profile.retry_timeout_s,
        ..ClusterOptions::default()
    };
    eprintln!("keel-dev: starting etcd and three keel nodes ({} profile)…", profile.name);
    let cluster = KeelCluster::start(3, options).await;
    let haproxy = Haproxy::start(&cluster.haproxy_backends(), CheckTiming::GUIDE);
    let ready = async {
        let (leader, _) = cluster.wait_streaming_replicas(2, Duration::from_secs(180)).await;
        let replicas: Vec<String> = cluster.names().into_iter().filter(|n| *n != leader).collect();
        haproxy.wait_settled(&leader, &replicas, Duration::from_secs(60)).await.map(|_| leader)
    };
    let interrupted = tokio::select! {
        leader = ready => {
            match leader {
                Ok(leader) => print_howto(&cluster, &haproxy, &leader),
                Err(e) => eprintln!("keel-dev: {e} (the cluster runs on; see the logs)"),
            }
            eprintln!("keel-dev: Ctrl-C stops everything");
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
            true
        }
        _ = int.recv() => true,
        _ = term.recv() => true,
    };
    debug_assert!(interrupted);
    teardown(cluster, haproxy)
}

fn print_howto(cluster: &KeelCluster, haproxy: &Haproxy, leader: &str) {
    let etcd = &cluster.etcd().endpoint;
    println!(
        "\nkeel-dev: cluster {SCOPE:?} is up; {leader} is the primary. Files under {}\n",
        cluster.root().display()
    );
    println!("  writes (HAProxy, primary port): psql 'host=127.0.0.1 port={} user=postgres password=postgres dbname=postgres'", haproxy.primary_port);
    println!("  reads  (HAProxy, replica port): psql 'host=127.0.0.1 port={} user=postgres password=postgres dbname=postgres'", haproxy.replica_port);
    for node in cluster.nodes() {
        println!(
            "  {}: psql -h 127.0.0.1 -p {} -U postgres   REST http://127.0.0.1:{}/patroni   log {}",
            node.name,
            node.pg_port,
            node.api_port,
            node.log_path.display()
        );
    }
    println!("  keelctl --dcs-url {etcd} --scope {SCOPE} list");
    println!("  ETCDCTL_API=3 etcdctl --endpoints {etcd} get --prefix {NAMESPACE}{SCOPE}/");
    println!("  HAProxy config {}\n", haproxy.config_path.display());
}

/// Stops HAProxy, the agents with their Postgres servers, and etcd, by PID;
/// then checks that none of them, nor anything naming the scratch
/// directory, is left.
fn teardown(cluster: KeelCluster, haproxy: Haproxy) -> std::process::ExitCode {
    eprintln!("\nkeel-dev: stopping…");
    let mut pids: Vec<u32> = haproxy.pid().into_iter().chain(cluster.etcd().pid()).collect();
    for node in cluster.nodes() {
        if let Some(agent) = node.agent_pid() {
            pids.push(agent);
            pids.extend(procs::descendants(agent));
        }
        pids.extend(node.postmaster_pid());
    }
    let root = cluster.root().to_owned();
    drop(haproxy);
    drop(cluster);
    let mut left = procs::alive(pids.iter().copied());
    left.extend(procs::processes_mentioning(&root));
    if left.is_empty() {
        eprintln!("keel-dev: all {} processes stopped", pids.len());
        std::process::ExitCode::SUCCESS
    } else {
        for pid in &left {
            eprintln!("keel-dev: still running: {pid} {}", procs::cmdline(*pid));
        }
        std::process::ExitCode::FAILURE
    }
}
