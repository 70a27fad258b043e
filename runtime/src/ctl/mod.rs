//! keelctl: keel's counterpart of `patronictl` (reference section 4), with
//! its words, prompts and output.
//!
//! It reads the cluster from etcd through the DCS layer ([`Dcs`]), changes
//! `config`, `failover` and the scope's keys with compare-and-swap, and asks
//! members to act through their REST API (`/switchover`, `/failover`,
//! `/restart`, `/reinitialize`), as patronictl does.
//!
//! - `connect`: where etcd and the cluster are (`-c FILE`, `--dcs-url`).
//! - `cluster`: the reads and the few writes keelctl makes in etcd.
//! - `show`: `list`, `topology` and `history` as tables, JSON or YAML.
//! - `edit`: `--set`/`--pg`/`--apply` edits of the dynamic config, the diff.
//! - `ops`: the commands that change something.
//! - `table`, `console`: the table, the prompts (the REST client is
//!   `api::client`, shared with the agent).
//!
//! Every failure is one [`CtlError`] line; commands check everything they
//! can before their one write, so a refused command changes nothing.

mod cluster;
mod connect;
mod console;
// Public for keel-fuzz's `ctl` target: pure readers of operator input.
pub mod edit;
mod ops;
mod show;
mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub use cluster::Cluster;
pub use connect::Target;
pub use console::Console;

#[derive(Parser, Debug)]
#[command(
    name = "keelctl",
    version,
    about = "keelctl: operate a keel (or Patroni) cluster, as patronictl does"
)]
pub struct Cli {
    /// keel's or Patroni's configuration file (default: $PATRONICTL_CONFIG_FILE).
    #[arg(short = 'c', long = "config-file", value_name = "FILE", global = true)]
    pub config_file: Option<PathBuf>,
    /// etcd's address, such as http://127.0.0.1:2379; replaces the file's etcd3 hosts.
    #[arg(short = 'd', long = "dcs-url", value_name = "URL", global = true)]
    pub dcs_url: Option<String>,
    /// The cluster's name; replaces the file's scope.
    #[arg(long, value_name = "NAME", global = true)]
    pub scope: Option<String>,
    /// The etcd namespace (default: the file's, else /service/).
    #[arg(long, value_name = "NAMESPACE", global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The members: role, state, timeline, lag.
    List {
        /// The cluster (default: the scope).
        cluster: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Pretty)]
        format: Format,
        /// Show the pending restart, scheduled restart and tag columns even
        /// when no member fills them.
        #[arg(short = 'e', long)]
        extended: bool,
        /// Print the time (UTC; patronictl prints local time) before the listing.
        #[arg(short = 't', long)]
        timestamp: bool,
        /// List again every 2 seconds.
        #[arg(short = 'W')]
        watch_2s: bool,
        /// List again every so many seconds.
        #[arg(short = 'w', long, value_name = "SECONDS")]
        watch: Option<f64>,
    },
    /// The members as a replication tree: the leader, then who streams from whom.
    Topology { cluster: Option<String> },
    /// The timeline history.
    History {
        cluster: Option<String>,
        #[arg(short = 'f', long, value_enum, default_value_t = Format::Pretty)]
        format: Format,
    },
    /// The dynamic configuration, as YAML.
    ShowConfig { cluster: Option<String> },
    /// Changes the dynamic configuration: shows the diff, asks, writes.
    /// Without --set, --pg, --apply or --replace it opens $EDITOR.
    EditConfig {
        cluster: Option<String>,
        /// A setting: `ttl=40`, `postgresql.use_pg_rewind=true`; empty deletes it.
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A PostgreSQL parameter: `max_connections=200`.
        #[arg(short = 'p', long = "pg", value_name = "PARAM=VALUE")]
        pg: Vec<String>,
        /// A YAML file (or `-` for stdin) merged into the configuration.
        #[arg(long, value_name = "FILE")]
        apply: Option<String>,
        /// A YAML file (or `-` for stdin) that replaces the configuration.
        #[arg(long, value_name = "FILE", conflicts_with = "apply")]
        replace: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Maintenance mode: keel stops managing the cluster.
    Pause {
        cluster: Option<String>,
        /// Wait until every member reports the cluster paused.
        #[arg(long)]
        wait: bool,
    },
    /// Ends maintenance mode.
    Resume {
        cluster: Option<String>,
        /// Wait until every member reports the cluster resumed.
        #[arg(long)]
        wait: bool,
    },
    /// Hands the leader role to a healthy replica.
    Switchover {
        cluster: Option<String>,
        /// The current leader.
        #[arg(long, alias = "primary", value_name = "NAME")]
        leader: Option<String>,
        /// The member to take over (default: the best one).
        #[arg(long, value_name = "NAME")]
        candidate: Option<String>,
        /// `now`, or a time with its offset: `2026-11-26T02:00+00:00`.
        #[arg(long, value_name = "TIME")]
        scheduled: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Promotes a named member, also when the cluster has no leader.
    Failover {
        cluster: Option<String>,
        #[arg(long, value_name = "NAME")]
        candidate: Option<String>,
        #[arg(long)]
        force: bool,
    },
    /// Restarts the members' PostgreSQL (all members if none is named).
    Restart {
        /// Members, optionally after the cluster's name, as patronictl takes them.
        #[arg(value_name = "MEMBER")]
        members: Vec<String>,
        #[arg(long)]
        force: bool,
        /// Only members whose restart is pending.
        #[arg(long)]
        pending: bool,
        /// Only members of this role.
        #[arg(long, value_enum, default_value_t = RoleFilter::Any)]
        role: RoleFilter,
        /// `now`, or a time with its offset: `2026-11-26T02:00+00:00`.
        #[arg(long, value_name = "TIME")]
        scheduled: Option<String>,
        /// Only members running an older PostgreSQL than this (`15.4`).
        #[arg(long = "pg-version", value_name = "VERSION")]
        pg_version: Option<String>,
        /// Fail over if the primary takes longer to start (seconds).
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u32).range(1..))]
        timeout: Option<u32>,
    },
    /// Makes the members read their configuration file again (all if none is named).
    Reload {
        /// Members, optionally after the cluster's name, as patronictl takes them.
        #[arg(value_name = "MEMBER")]
        members: Vec<String>,
        #[arg(long)]
        force: bool,
        /// Only members of this role.
        #[arg(long, value_enum, default_value_t = RoleFilter::Any)]
        role: RoleFilter,
    },
    /// Rebuilds replicas from the leader.
    Reinit {
        #[arg(value_name = "MEMBER", required = true)]
        members: Vec<String>,
        #[arg(long)]
        force: bool,
    },
    /// Cancels scheduled actions: `flush [CLUSTER] [MEMBER…] restart|switchover`.
    Flush {
        /// The members (restart; all if none) and last the target.
        #[arg(value_name = "ARGS", required = true)]
        args: Vec<String>,
        /// Only members of this role (restart).
        #[arg(long, value_enum, default_value_t = RoleFilter::Any)]
        role: RoleFilter,
        #[arg(long)]
        force: bool,
    },
    /// Deletes the whole cluster from etcd, after typed confirmations.
    Remove { cluster: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Pretty,
    Json,
    Yaml,
}

/// patronictl's `--role`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleFilter {
    Leader,
    Primary,
    Replica,
    Any,
}

/// One line for the operator: `keelctl: <this>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlError(pub String);

impl fmt::Display for CtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CtlError {}

impl From<std::io::Error> for CtlError {
    fn from(e: std::io::Error) -> CtlError {
        CtlError(format!("cannot write the output: {e}"))
    }
}

/// `Err(CtlError)` from a format string.
macro_rules! fail {
    ($($arg:tt)*) => { return Err($crate::ctl::CtlError(format!($($arg)*))) };
}
pub(crate) use fail;

impl Command {
    /// The cluster named on the command line, which replaces the scope.
    fn cluster(&self) -> Option<&str> {
        match self {
            Command::List { cluster, .. }
            | Command::Topology { cluster }
            | Command::History { cluster, .. }
            | Command::ShowConfig { cluster }
            | Command::EditConfig { cluster, .. }
            | Command::Pause { cluster, .. }
            | Command::Resume { cluster, .. }
            | Command::Switchover { cluster, .. }
            | Command::Failover { cluster, .. } => cluster.as_deref(),
            Command::Remove { cluster } => Some(cluster),
            Command::Restart { .. }
            | Command::Reload { .. }
            | Command::Reinit { .. }
            | Command::Flush { .. } => None,
        }
    }
}

/// Runs one command: connects to etcd, then does it, talking to the
/// operator through `console`. `env` is the process environment.
pub async fn run(
    cli: Cli,
    env: &BTreeMap<String, String>,
    console: &mut Console<'_>,
) -> Result<(), CtlError> {
    let target = Target::resolve(&cli, env)?;
    for warning in &target.warnings {
        console.warn(warning);
    }
    let kv = crate::dcs::etcd::EtcdKv::connect(&target.etcd)
        .await
        .map_err(|e| CtlError(format!("cannot reach etcd at {}: {e}", target.etcd.endpoints.join(","))))?;
    let cluster = Cluster::new(kv, &target);
    ops::dispatch(&cluster, &target, cli.command, console).await
}
