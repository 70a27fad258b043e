//! `keel`: the node agent. Reads a Patroni-format config file, keeps this
//! node's PostgreSQL in the cluster: bootstrap, follow, fail over, fence.
//!
//! `keel FILE` or `keel -c FILE`, as `patroni FILE`; `keel --validate-config
//! FILE` checks the file and exits, as `patroni --validate-config FILE`.
//! SIGTERM (or SIGINT): stop Postgres, release the leader lock if held,
//! exit 0. SIGHUP: read the config file again, as `POST /reload` does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use keel_core::Request;
use keel_runtime::agent::command::Command;
use keel_runtime::agent::{environment, local::LocalPostgres, setup::Setup, Agent};
use keel_runtime::api::{self, Access, Api, KvStore, NodeStatus, Ops};
use keel_runtime::config::{self, Loaded};
use keel_runtime::dcs::etcd::{EtcdKv, EtcdOptions, EtcdTls};
use keel_runtime::dcs::{Dcs, Keys};
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(name = "keel", version, about = "keel: high availability for PostgreSQL (Patroni-compatible)")]
struct Args {
    /// The configuration file (Patroni's YAML format), as `patroni FILE`.
    #[arg(value_name = "FILE")]
    file: Option<PathBuf>,
    /// The configuration file, as an option.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text (as `log.type: json`).
    #[arg(long)]
    log_json: bool,
    /// Check the configuration file and exit, as `patroni --validate-config`:
    /// one line per problem on stderr, exit code 1 if there is any, 0 if
    /// there is none. Starts nothing and contacts nothing.
    #[arg(long, conflicts_with = "log_json")]
    validate_config: bool,
}

impl Args {
    /// The configuration file, given either way (or both ways, naming the
    /// same file).
    fn config_file(&self) -> Result<&Path, String> {
        match (&self.file, &self.config) {
            (Some(file), Some(config)) if !same_file(file, config) => Err(format!(
                "two configuration files: {} and --config {}; give one",
                file.display(),
                config.display()
            )),
            (Some(file), _) | (None, Some(file)) => Ok(file),
            (None, None) => Err("no configuration file: keel FILE, or keel --config FILE".into()),
        }
    }
}

/// The same path, or two paths to the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let path = match args.config_file() {
        Ok(path) => path.to_owned(),
        Err(e) => Args::command().error(clap::error::ErrorKind::ArgumentConflict, e).exit(),
    };
    if args.validate_config {
        return validate_config(&path);
    }
    // The file says how to log (log.level, log.type): read it first, and
    // report what it holds once logging is set up.
    let loaded = config::load(&path, &environment());
    let log = loaded.as_ref().ok().map(|l| &l.config.log);
    let level = log.and_then(|log| log.tracing_level()).unwrap_or("info");
    // KEEL_LOG, when set, wins over log.level (per-module directives).
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG").unwrap_or_else(|_| level.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(false);
    if args.log_json || log.is_some_and(|log| log.json()) {
        logs.json().init();
    } else {
        logs.init();
    }
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(e) => {
            error!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(path, loaded))
}

async fn run(path: PathBuf, loaded: Loaded) -> ExitCode {
    // SIGHUP's default action ends the process, and with the agent its
    // Postgres: taken over first. One that comes before etcd answers is
    // kept and acted on once the reload can be.
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler");
        return ExitCode::FAILURE;
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
        tls: https.then(|| EtcdTls::of(&cfg.etcd3)),
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
    let ops = Ops::new(Box::new(store), tx.clone()).reload_from(path.clone(), environment(), cfg.clone());
    api.set_operations(ops);
    // SIGHUP (Patroni's systemd unit reloads with `kill -HUP`) is the same
    // reload as `POST /reload`; a file that does not load changes nothing.
    let reloads = api.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            info!("SIGHUP: reading {} again", path.display());
            match reloads.reload_config().await {
                Ok(message) => info!("SIGHUP: {message}"),
                Err(failed) => error!("SIGHUP: {}", failed.message),
            }
        }
    });
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

/// `keel --validate-config FILE`: every problem of the file, then those of
/// the machine it names (`data_dir`, `bin_dir`, certificates), one per
/// line as `FILE: key.path: reason`, after the warnings the agent would
/// log (`FILE: warning: ...`).
fn validate_config(path: &Path) -> ExitCode {
    let mut review = config::review(path, &environment());
    if let Some(cfg) = &review.config {
        let (problems, warnings) = config::machine::review(cfg);
        review.problems.extend(problems);
        review.warnings.extend(warnings);
    }
    let file = path.display();
    for warning in &review.warnings {
        eprintln!("{file}: warning: {warning}");
    }
    for problem in &review.problems {
        eprintln!("{file}: {problem}");
    }
    if review.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The effective user is root: /proc/self belongs to the process's euid.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_file(argv: &[&str]) -> Result<PathBuf, String> {
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        args.config_file().map(Path::to_owned)
    }

    #[test]
    fn the_config_file_is_taken_as_an_argument_or_an_option() {
        assert_eq!(config_file(&["keel", "patroni.yml"]), Ok(PathBuf::from("patroni.yml")));
        assert_eq!(config_file(&["keel", "-c", "patroni.yml"]), Ok(PathBuf::from("patroni.yml")));
        assert_eq!(config_file(&["keel", "--config", "a.yml", "a.yml"]), Ok(PathBuf::from("a.yml")));
    }

    #[test]
    fn two_different_config_files_or_none_are_refused() {
        let two = config_file(&["keel", "a.yml", "-c", "b.yml"]).unwrap_err();
        assert_eq!(two, "two configuration files: a.yml and --config b.yml; give one");
        let none = config_file(&["keel"]).unwrap_err();
        assert_eq!(none, "no configuration file: keel FILE, or keel --config FILE");
        assert!(config_file(&["keel", "a.yml", "b.yml"]).is_err(), "one positional argument");
    }
}
