//! `keel`: the node agent. Reads a Patroni-format config file, keeps this
//! node's PostgreSQL in the cluster: bootstrap, follow, fail over, fence.
//!
//! SIGTERM (or SIGINT): stop Postgres, release the leader lock if held,
//! exit 0.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use keel_core::Request;
use keel_runtime::agent::command::Command;
use keel_runtime::agent::{environment, local::LocalPostgres, setup::Setup, Agent};
use keel_runtime::api::{self, Access, Api, KvStore, NodeStatus, Ops};
use keel_runtime::config;
use keel_runtime::dcs::etcd::{EtcdKv, EtcdOptions, EtcdTls};
use keel_runtime::dcs::{Dcs, Keys};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(name = "keel", version, about = "keel: high availability for PostgreSQL (Patroni-compatible)")]
struct Args {
    /// The configuration file (Patroni's YAML format).
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false);
    if args.log_json {
        logs.json().init();
    } else {
        logs.init();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> ExitCode {
    let loaded = match config::load(&args.config, &environment()) {
        Ok(loaded) => loaded,
        Err(e) => {
            error!("{}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    for w in &loaded.warnings {
        warn!("config: {w}");
    }
    let cfg = loaded.config;
    // The API's certificate is part of the config: a bad one is a config
    // error, reported before anything starts.
    let tls = match api::tls::server_config(&cfg.restapi) {
        Ok(tls) => tls,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    if running_as_root() {
        error!("refusing to run as root: PostgreSQL must run as an unprivileged user (run keel as the postgres user)");
        return ExitCode::from(2);
    }
    let setup = match Setup::new(&cfg) {
        Ok(setup) => setup,
        Err(e) => {
            error!("config: {e}");
            return ExitCode::from(2);
        }
    };
    for warning in &setup.warnings {
        warn!("config: {warning}");
    }
    // Bound before waiting for etcd: a port in use is a config error, and
    // HAProxy gets its 503s while the node waits.
    let listener = match api::bind(&cfg.restapi.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            error!("restapi.listen {}: cannot bind: {e}", cfg.restapi.listen);
            return ExitCode::from(2);
        }
    };
    let status = NodeStatus::new(&cfg.name, &cfg.scope, cfg.tags.to_member_tags()).shared();
    let api = Api::new(status.clone()).with_access(Access::from_config(&cfg.restapi).await);
    let served = api.clone();
    let https = tls.is_some();
    tokio::spawn(async move {
        let served = match tls {
            Some(tls) => api::serve_tls(listener, served, tls).await,
            None => api::serve(listener, served).await,
        };
        if let Err(e) = served {
            error!("REST API stopped: {e}");
        }
    });
    info!(listen = %cfg.restapi.listen, https, "REST API listening");
    let timeout = Duration::from_secs(u64::try_from(cfg.bootstrap.dcs.retry_timeout).unwrap_or(10).max(1));
    let https = cfg.etcd3.protocol == config::EtcdProtocol::Https;
    let scheme = if https { "https" } else { "http" };
    let opts = EtcdOptions {
        endpoints: cfg.etcd3.hosts.iter().map(|h| format!("{scheme}://{h}")).collect(),
        username: cfg.etcd3.username.clone(),
        password: cfg.etcd3.password.clone(),
        timeout,
        tls: https.then(|| EtcdTls {
            ca: cfg.etcd3.cacert.clone(),
            cert: cfg.etcd3.cert.clone(),
            key: cfg.etcd3.key.clone(),
        }),
    };
    let mut kv = loop {
        match EtcdKv::connect(&opts).await {
            Ok(kv) => break kv,
            Err(e) => {
                warn!("waiting for etcd: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let keys = Keys::new(&cfg.namespace, &cfg.scope);
    let (wake_tx, wake_rx) = tokio::sync::mpsc::channel(1);
    let _watch = kv.keep_scope(keys.prefix(), vec![keys.leader(), keys.failover()], wake_tx);
    let store = KvStore::new(kv.clone(), keys.clone());
    let dcs = Dcs::new(kv, keys, &cfg.name, &setup.conn_url, &setup.api_url);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let ops =
        Ops::new(Box::new(store), tx.clone()).reload_from(args.config.clone(), environment(), cfg.clone());
    api.set_operations(ops);
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        error!("cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        info!("shutdown requested");
        let _ = tx.send(Command::tell(Request::Shutdown)).await;
    });
    info!(name = %cfg.name, scope = %cfg.scope, "keel starting");
    let pg = LocalPostgres::new(setup, &cfg.name, cfg.postgresql.authentication.clone());
    Agent::new(cfg, dcs, pg, rx).wake_on(wake_rx).publish_to(status).run().await;
    ExitCode::SUCCESS
}

/// The effective user is root: /proc/self belongs to the process's euid.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
