//! What each piece of an idle agent's loop costs in CPU: the I/O every
//! loop does (the scope read from etcd, a lease keep-alive on a kept
//! stream, the Postgres probe on the kept connection) and a timer wake-up,
//! each repeated back to back against a real etcd and PostgreSQL 15 this
//! binary starts on loopback (and stops). Prints microseconds of this
//! process's CPU (user + system, `/proc/self/stat`) per operation.
//!
//!     cargo run --release -p keel-tests --bin keel-opcost [-- --ops 3000]
//!
//! Back to back, the code and data stay in the caches: an agent that
//! sleeps a second between loops pays more per operation (docs/benchmarks.md).

use std::time::Duration;

use clap::Parser;
use keel_runtime::dcs::etcd::{EtcdKv, EtcdOptions};
use keel_runtime::dcs::Kv;
use keel_runtime::pg::probe::Session;
use keel_tests::etcd::EtcdServer;
use keel_tests::postgres::PgNode;

#[derive(Parser)]
struct Args {
    /// Repetitions of each operation.
    #[arg(long, default_value_t = 3000)]
    ops: u32,
    /// Sleep this long before each operation, as the agent sleeps between
    /// loops (the caches go cold); the sleep's own cost, measured alone,
    /// is subtracted.
    #[arg(long, default_value_t = 0)]
    pause_ms: u64,
}

/// This process's CPU time so far, in seconds (clock ticks of 10 ms).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, r)| r).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU per `op`, each after a pause of `pause` (whose own cost, `pause_cost_s`
/// per pause, is taken off).
async fn per_op<T, E: std::fmt::Debug>(
    what: &str,
    ops: u32,
    pause: Duration,
    pause_cost_s: f64,
    mut op: impl AsyncFnMut() -> Result<T, E>,
) -> Result<f64, String> {
    let start = cpu_s();
    for _ in 0..ops {
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        op().await.map_err(|e| format!("{what}: {e:?}"))?;
    }
    let each_s = (cpu_s() - start) / f64::from(ops) - pause_cost_s;
    println!("{what:<40} {:>6.0} µs of CPU per operation", each_s * 1e6);
    Ok(each_s)
}

async fn run(args: Args) -> Result<(), String> {
    let etcd = EtcdServer::start();
    let mut pg = PgNode::new("pg1");
    pg.initdb().await;
    pg.start(pg.config()).await;
    let opts = EtcdOptions {
        endpoints: vec![etcd.endpoint.clone()],
        timeout: Duration::from_secs(3),
        ..EtcdOptions::default()
    };
    let kv = EtcdKv::connect(&opts).await.map_err(|e| e.to_string())?;
    // A scope like a three-node cluster's: members, leader, config, sync.
    let member = r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","version":"keel 0.1.0","xlog_location":67108864,"timeline":1,"replication_state":"streaming","tags":{}}"#;
    for key in
        ["members/pg1", "members/pg2", "members/pg3", "config", "sync", "leader", "initialize", "status"]
    {
        let put = keel_runtime::dcs::Op::Put {
            key: format!("/service/bench/{key}"),
            value: member.as_bytes().to_vec(),
            lease: 0,
        };
        kv.txn(vec![], vec![put], vec![]).await.map_err(|e| e.to_string())?;
    }
    let (n, pause) = (args.ops, Duration::from_millis(args.pause_ms));
    let nothing = async || Ok::<(), ()>(());
    let pause_cost_s = if pause.is_zero() {
        println!("{n} operations each, back to back:");
        0.0
    } else {
        println!("{n} operations each, {} ms apart:", args.pause_ms);
        per_op("the pause alone (a timer wake-up)", n, pause, 0.0, nothing).await?
    };
    let c = pause_cost_s;
    per_op("etcd: read the scope (8 keys)", n, pause, c, async || kv.range_prefix("/service/bench/").await)
        .await?;
    let (lease, _) = kv.grant(30).await.map_err(|e| e.to_string())?;
    per_op("etcd: lease keep-alive (kept stream)", n, pause, c, async || kv.keep_alive(lease).await).await?;
    let postmaster = pg.ctl.postmaster_pid().ok_or("no postmaster")?;
    let mut session = Session::new(pg.conn());
    per_op("Postgres: probe (kept connection)", n, pause, c, async || session.probe(postmaster).await)
        .await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-opcost: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
