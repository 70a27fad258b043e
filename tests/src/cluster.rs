//! A keel cluster on loopback for end-to-end tests: one etcd, N agents
//! (`keel --config <file>`, each running as the unprivileged Postgres
//! user in a scratch directory of its own), observers that read etcd and
//! query Postgres, fault injection, and a client workload that records
//! which writes were acknowledged ([`Writer`]).
//!
//! Every test that uses it runs on a multi-threaded tokio runtime
//! (`#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`): the
//! writers and etcd proxies are tokio tasks that must keep running while
//! the test waits. Clusters of one test process run one at a time (each
//! [`KeelCluster::start`] waits for the previous cluster to be dropped):
//! the scenarios measure failover times, and two clusters racing for two
//! cores would measure the machine instead.
//!
//! Dropping a [`KeelCluster`], also when the test panicked, kills every
//! process it started, by PID (agents, the Postgres servers they started,
//! and anything else whose command line names its scratch directory),
//! then stops etcd and removes the scratch directories; on a panic it
//! first prints the end of every log.

pub mod procs;
pub mod proxy;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use keel_core::ClusterView;
use keel_runtime::dcs::etcd::{EtcdKv, EtcdOptions};
use keel_runtime::dcs::{Dcs, Keys, KvError};
use tokio::sync::OwnedMutexGuard;
use tokio_postgres::SimpleQueryMessage;

pub use proxy::EtcdProxy;
pub use writer::{Ack, Endpoint, Era, Failure, Gap, WriteLog, Writer};

use crate::etcd::EtcdServer;
use crate::postgres::pg_ctl;
use crate::scratch::{free_port, Scratch};

/// Patroni's default namespace, which the nodes' configs use.
pub const NAMESPACE: &str = "/service/";
/// Queries of [`KeelCluster::sql`] and its helpers.
pub const SQL_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the `wait_*` helpers look again.
const POLL: Duration = Duration::from_millis(100);

/// How to build the command that runs one node's agent, given its config
/// file. The harness adds the user, the log, the working directory and a
/// parent-death signal.
pub type AgentCommand = fn(&Path) -> Command;

#[derive(Clone)]
pub struct ClusterOptions {
    pub scope: String,
    /// `bootstrap.dcs.synchronous_mode`.
    pub synchronous_mode: bool,
    /// `bootstrap.dcs.synchronous_mode_strict`.
    pub synchronous_mode_strict: bool,
    /// `bootstrap.dcs.ttl`, `loop_wait`, `retry_timeout` (seconds).
    pub ttl_s: u64,
    pub loop_wait_s: u64,
    pub retry_timeout_s: u64,
    /// Pause between starting one agent and the next (zero: all at once,
    /// racing for the initialize key).
    pub stagger: Duration,
    /// Each agent reaches etcd through an [`EtcdProxy`] of its own, which
    /// [`KeelCluster::cut_etcd`] cuts.
    pub etcd_proxies: bool,
    /// `None`: the keel binary ([`keel_bin`]) with `--config <file>`.
    pub agent_command: Option<AgentCommand>,
    /// The guide's authentication: connections over TCP (the replicas'
    /// streams, pg_basebackup, pg_rewind, the harness's queries) need a
    /// scram-sha-256 password, and pg_rewind connects as a user of its own
    /// ([`REWIND_USER`], Patroni's `authentication.rewind`). Otherwise
    /// loopback is trusted and pg_rewind connects as the superuser.
    pub scram_auth: bool,
    /// `pg_hba` in each node's file (`true`), or in `bootstrap.dcs`, so
    /// that the dynamic configuration's `pg_hba` is the one in force.
    pub local_pg_hba: bool,
    /// Further `postgresql.parameters` in one node's file: node name →
    /// (parameter, value as YAML).
    pub node_parameters: BTreeMap<String, Vec<(String, String)>>,
}

/// pg_rewind's user with [`ClusterOptions::scram_auth`], and its password.
pub const REWIND_USER: (&str, &str) = ("rewind_user", "rewind_password");

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            scope: "keel-e2e".into(),
            synchronous_mode: false,
            synchronous_mode_strict: false,
            ttl_s: 5,
            loop_wait_s: 1,
            retry_timeout_s: 2,
            stagger: Duration::ZERO,
            etcd_proxies: false,
            agent_command: None,
            scram_auth: false,
            local_pg_hba: true,
            node_parameters: BTreeMap::new(),
        }
    }
}

impl ClusterOptions {
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_s)
    }

    pub fn loop_wait(&self) -> Duration {
        Duration::from_secs(self.loop_wait_s)
    }
}

/// What one node's config file needs.
pub struct ConfigSpec<'a> {
    pub options: &'a ClusterOptions,
    pub name: &'a str,
    pub pg_port: u16,
    pub api_port: u16,
    /// Where the node reaches etcd (its proxy's port, or etcd's).
    pub etcd_port: u16,
    /// The node's scratch directory: `data/`, `sock/` and `pgpass` in it.
    pub dir: &'a Path,
    pub bin_dir: &'a Path,
}

/// The node's Patroni-format YAML: TCP on 127.0.0.1, trust for everyone on
/// loopback (or scram-sha-256 over TCP, [`ClusterOptions::scram_auth`]), the
/// Postgres socket in the scratch directory.
pub fn config_yaml(spec: &ConfigSpec<'_>) -> String {
    let o = spec.options;
    let path = |p: PathBuf| yaml_quote(&p.to_string_lossy());
    let (tcp_auth, (rewind_user, rewind_password)) =
        if o.scram_auth { ("scram-sha-256", REWIND_USER) } else { ("trust", ("postgres", "postgres")) };
    let hba = [
        "local all all trust".to_owned(),
        format!("host all all 127.0.0.1/32 {tcp_auth}"),
        format!("host replication all 127.0.0.1/32 {tcp_auth}"),
    ];
    let hba_lines = |indent: &str| hba.iter().map(|l| format!("{indent}  - {l}\n")).collect::<String>();
    let (local_hba, dcs_hba) = if o.local_pg_hba {
        (format!("  pg_hba:\n{}", hba_lines("  ")), String::new())
    } else {
        (String::new(), format!("      pg_hba:\n{}", hba_lines("      ")))
    };
    let extra_parameters: String = o
        .node_parameters
        .get(spec.name)
        .into_iter()
        .flatten()
        .map(|(name, value)| format!("    {name}: {value}\n"))
        .collect();
    format!(
        "scope: {scope}
namespace: {NAMESPACE}
name: {name}
restapi:
  listen: 127.0.0.1:{api}
  connect_address: 127.0.0.1:{api}
etcd3:
  hosts:
    - 127.0.0.1:{etcd}
bootstrap:
  dcs:
    ttl: {ttl}
    loop_wait: {loop_wait}
    retry_timeout: {retry}
    maximum_lag_on_failover: 1048576
    synchronous_mode: {sync}
    synchronous_mode_strict: {strict}
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: 'on'
{dcs_hba}  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {pgpass}
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
    rewind:
      username: {rewind_user}
      password: {rewind_password}
  parameters:
    unix_socket_directories: {sock}
    log_line_prefix: '%m [%p] '
    log_timezone: UTC
{extra_parameters}{local_hba}tags: {{}}
",
        scope = yaml_quote(&o.scope),
        name = yaml_quote(spec.name),
        api = spec.api_port,
        etcd = spec.etcd_port,
        ttl = o.ttl_s,
        loop_wait = o.loop_wait_s,
        retry = o.retry_timeout_s,
        sync = o.synchronous_mode,
        strict = o.synchronous_mode_strict,
        pg = spec.pg_port,
        data = path(spec.dir.join("data")),
        bin = path(spec.bin_dir.to_owned()),
        pgpass = path(spec.dir.join("pgpass")),
        sock = path(spec.dir.join("sock")),
    )
}

/// A single-quoted YAML scalar.
fn yaml_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The agent binary: `KEEL_BIN`, else `keel` beside the test executable's
/// `deps/` directory (`<target>/debug/deps/<test>-<hash>` →
/// `<target>/debug/keel`), where `cargo build -p keel-runtime --bin keel`
/// (or any workspace build) puts it.
pub fn keel_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KEEL_BIN") {
        // The agents run in their own directories: a relative path
        // (`KEEL_BIN=target/dist/keel`) is taken from here.
        let bin = PathBuf::from(bin);
        return std::path::absolute(&bin).unwrap_or(bin);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    exe.parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("keel"))
        .unwrap_or_else(|| panic!("no target directory above {}", exe.display()))
}

/// One node: its addresses, files and agent process.
pub struct KeelNode {
    pub name: String,
    pub pg_port: u16,
    pub api_port: u16,
    /// The node's scratch directory (owned by the Postgres user).
    pub dir: PathBuf,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub config_path: PathBuf,
    /// The agent's stdout and stderr (and so the server log of a Postgres
    /// it starts with inherited output), appended across restarts.
    pub log_path: PathBuf,
    child: Option<Child>,
    /// The test has not killed or stopped the agent: if it is gone, it
    /// exited on its own, and the `wait_*` helpers fail at once.
    expected_running: bool,
    proxy: Option<EtcdProxy>,
}

impl KeelNode {
    /// The agent's PID while the harness holds its process.
    pub fn agent_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The live postmaster of `data_dir`, from `postmaster.pid`.
    pub fn postmaster_pid(&self) -> Option<u32> {
        procs::postmaster_pid(&self.data_dir)
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint { name: self.name.clone(), port: self.pg_port }
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// The last `lines` lines of the agent's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log(), lines)
    }
}

pub struct KeelCluster {
    nodes: Vec<KeelNode>,
    options: ClusterOptions,
    observer: Dcs<EtcdKv>,
    etcd: EtcdServer,
    run_as: Option<(u32, u32)>,
    started: Instant,
    /// Declared after everything that lives in it: removed last.
    root: Scratch,
    _exclusive: OwnedMutexGuard<()>,
}

impl KeelCluster {
    /// Starts etcd, writes each node's config (`pg1`, `pg2`, …) and starts
    /// the agents, `options.stagger` apart. Returns at once: use
    /// [`KeelCluster::wait_for_leader`] and friends to wait for roles.
    pub async fn start(count: usize, options: ClusterOptions) -> KeelCluster {
        assert!((1..=9).contains(&count), "1 to 9 nodes, not {count}");
        let exclusive = exclusive().await;
        if options.agent_command.is_none() {
            let bin = keel_bin();
            assert!(
                bin.exists(),
                "no keel agent at {}: build it (`cargo build -p keel-runtime --bin keel`) or set KEEL_BIN",
                bin.display()
            );
        }
        let root = Scratch::new("cluster");
        // The fixture's idea of the Postgres binaries and user (KEEL_PG_BIN,
        // KEEL_PG_USER, root or not); nothing runs in this data directory.
        let probe = pg_ctl(&root.path().join("no-data"), &root.path().join("no.log"));
        let (run_as, bin_dir) = (probe.run_as, probe.bin_dir);
        let etcd = EtcdServer::start();
        let etcd_addr: SocketAddr = etcd
            .endpoint
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("etcd endpoint {:?} is not http://host:port", etcd.endpoint));
        let mut nodes = Vec::with_capacity(count);
        for number in 1..=count {
            let name = format!("pg{number}");
            let dir = root.path().join(&name);
            make_dir(&dir, 0o755, run_as);
            make_dir(&dir.join("data"), 0o700, run_as);
            make_dir(&dir.join("sock"), 0o700, run_as);
            let proxy = if options.etcd_proxies { Some(EtcdProxy::start(etcd_addr).await) } else { None };
            let node = KeelNode {
                pg_port: free_port(),
                api_port: free_port(),
                data_dir: dir.join("data"),
                socket_dir: dir.join("sock"),
                config_path: dir.join("keel.yml"),
                log_path: dir.join("keel.log"),
                child: None,
                expected_running: false,
                name,
                dir,
                proxy,
            };
            let spec = ConfigSpec {
                options: &options,
                name: &node.name,
                pg_port: node.pg_port,
                api_port: node.api_port,
                etcd_port: node.proxy.as_ref().map_or(etcd_addr.port(), |p| p.port),
                dir: &node.dir,
                bin_dir: &bin_dir,
            };
            std::fs::write(&node.config_path, config_yaml(&spec)).expect("write the node's config");
            std::fs::write(&node.log_path, "").expect("create the node's log");
            chown(&node.config_path, run_as);
            chown(&node.log_path, run_as);
            nodes.push(node);
        }
        let observer = observer(&etcd, &options.scope).await;
        let stagger = options.stagger;
        let mut cluster = KeelCluster {
            nodes,
            options,
            observer,
            etcd,
            run_as,
            started: Instant::now(),
            root,
            _exclusive: exclusive,
        };
        for index in 0..count {
            if index > 0 && !stagger.is_zero() {
                tokio::time::sleep(stagger).await;
            }
            cluster.spawn_agent(index);
        }
        cluster
    }

    pub fn nodes(&self) -> &[KeelNode] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> &KeelNode {
        &self.nodes[self.index(name)]
    }

    pub fn names(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.name.clone()).collect()
    }

    /// The status code of one request to `node`'s REST API (`OPTIONS
    /// /primary`, as HAProxy asks), over a plain HTTP/1.1 connection.
    pub async fn api_code(&self, node: &str, method: &str, path: &str) -> Result<u16, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let port = self.node(node).api_port;
        let exchange = async {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            let mut raw = Vec::new();
            stream.read_to_end(&mut raw).await?;
            Ok::<_, std::io::Error>(raw)
        };
        let raw = tokio::time::timeout(Duration::from_secs(5), exchange)
            .await
            .map_err(|_| format!("{node}: {method} {path}: no answer within 5 s"))?
            .map_err(|e| format!("{node}: {method} {path}: {e}"))?;
        let raw = String::from_utf8_lossy(&raw);
        raw.split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("{node}: {method} {path}: not an HTTP response: {raw:?}"))
    }

    pub fn options(&self) -> &ClusterOptions {
        &self.options
    }

    /// When the agents were started: the origin of the times in messages.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The scratch directory holding every node's directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn etcd(&self) -> &EtcdServer {
        &self.etcd
    }

    // --- observers ---------------------------------------------------------

    /// The cluster as etcd holds it (through the real etcd, never a proxy).
    pub async fn view(&self) -> Result<ClusterView, KvError> {
        Ok(self.observer.read().await?.view)
    }

    /// The `config` key as stored; `Null` when absent or invalid, or when
    /// etcd does not answer.
    pub async fn config_key(&self) -> serde_json::Value {
        self.observer.read().await.ok().and_then(|snap| snap.config_stored).unwrap_or_default()
    }

    /// The leader key's holder; `None` also when etcd does not answer.
    pub async fn leader(&self) -> Option<String> {
        self.view().await.ok()?.leader.map(|l| l.name)
    }

    /// Reads etcd until `check` holds, for at most `timeout`; panics with
    /// `what` and the last view otherwise, or at once when an agent exited
    /// without being told to.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        check: impl Fn(&ClusterView) -> bool,
    ) -> ClusterView {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_agents_alive();
            let last = match self.view().await {
                Ok(view) if check(&view) => return view,
                Ok(view) => format!("{view:#?}"),
                Err(e) => e.to_string(),
            };
            assert!(Instant::now() < deadline, "waited {timeout:?} for {what}; etcd last said: {last}");
            tokio::time::sleep(POLL).await;
        }
    }

    pub async fn wait_for_leader(&self, timeout: Duration) -> String {
        let view = self.wait_for(timeout, "a leader", |v| v.leader.is_some()).await;
        view.leader.map(|l| l.name).expect("checked")
    }

    /// Runs `query` (simple protocol, any number of statements) on `node`
    /// as `postgres` over TCP; every row of every statement, as text.
    pub async fn sql(&self, node: &str, query: &str) -> Result<Vec<Vec<Option<String>>>, String> {
        let port = self.node(node).pg_port;
        let client = writer::connect(port, "keel-tests", SQL_TIMEOUT).await?;
        let messages = match tokio::time::timeout(SQL_TIMEOUT, client.simple_query(query)).await {
            Err(_) => return Err(format!("{node}: no answer within {SQL_TIMEOUT:?} to {query}")),
            Ok(Err(e)) => return Err(format!("{node}: {query}: {}", writer::error_text(&e))),
            Ok(Ok(messages)) => messages,
        };
        let rows = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => {
                    Some((0..row.len()).map(|i| row.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect();
        Ok(rows)
    }

    /// `pg_is_in_recovery()` on `node`.
    pub async fn is_in_recovery(&self, node: &str) -> Result<bool, String> {
        let rows = self.sql(node, "SELECT pg_is_in_recovery()").await?;
        match rows.first().and_then(|r| r.first()).and_then(|v| v.as_deref()) {
            Some("t") => Ok(true),
            Some("f") => Ok(false),
            other => Err(format!("{node}: pg_is_in_recovery() returned {other:?}")),
        }
    }

    /// Waits until `node` answers `pg_is_in_recovery()` with `in_recovery`.
    pub async fn wait_recovery_state(&self, node: &str, in_recovery: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_agents_alive();
            let last = self.is_in_recovery(node).await;
            if last == Ok(in_recovery) {
                return;
            }
            let want = if in_recovery { "a replica" } else { "a primary" };
            assert!(Instant::now() < deadline, "waited {timeout:?} for {node} to be {want}; last: {last:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until the leader (by etcd) lists at least `count` standbys as
    /// `streaming` in `pg_stat_replication`; returns the leader and their
    /// names (`application_name`, the member names). Only members count:
    /// the WAL stream of a base backup in progress shows as `streaming`
    /// too (as `keel_basebackup_<member>`), before that member has a
    /// server running.
    pub async fn wait_streaming_replicas(&self, count: usize, timeout: Duration) -> (String, Vec<String>) {
        let query = "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming' ORDER BY 1";
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_agents_alive();
            let last = match self.leader().await {
                None => "no leader in etcd".to_owned(),
                Some(leader) => match self.sql(&leader, query).await {
                    Ok(rows) => {
                        let names: Vec<String> = rows
                            .into_iter()
                            .filter_map(|r| r.into_iter().next().flatten())
                            .filter(|name| self.nodes.iter().any(|n| n.name == *name))
                            .collect();
                        if names.len() >= count {
                            return (leader, names);
                        }
                        format!("{leader} streams to {names:?}")
                    }
                    Err(e) => e,
                },
            };
            assert!(
                Instant::now() < deadline,
                "waited {timeout:?} for {count} streaming replicas; last: {last}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The ids in `keel_writes` on `node`.
    pub async fn written_ids(&self, node: &str) -> Result<BTreeSet<i64>, String> {
        let rows = self.sql(node, "SELECT id FROM keel_writes").await?;
        rows.iter()
            .map(|r| {
                let text = r.first().and_then(|v| v.as_deref()).unwrap_or_default();
                text.parse::<i64>().map_err(|e| format!("{node}: id {text:?}: {e}"))
            })
            .collect()
    }

    /// The writes `log` has as acknowledged that `node` does not hold;
    /// panics if `node` cannot be read.
    pub async fn missing_on(&self, log: &WriteLog, node: &str) -> Vec<i64> {
        let present = self.written_ids(node).await.unwrap_or_else(|e| panic!("reading keel_writes: {e}"));
        log.missing_from(&present)
    }

    /// Waits until `node` holds every write `log` has as acknowledged (a
    /// replica replaying them); panics with the missing ids otherwise.
    pub async fn wait_replicated(&self, log: &WriteLog, node: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.written_ids(node).await {
                Ok(present) => {
                    let missing = log.missing_from(&present);
                    if missing.is_empty() {
                        return;
                    }
                    format!("{} acknowledged writes missing: {missing:?}", missing.len())
                }
                Err(e) => e,
            };
            assert!(Instant::now() < deadline, "waited {timeout:?} for {node} to hold every write; {last}");
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.nodes.iter().map(KeelNode::endpoint).collect()
    }

    /// A [`Writer`] through whichever node answers as primary.
    pub fn writer(&self) -> Writer {
        Writer::follow_primary(self.endpoints())
    }

    /// The nodes as HAProxy's servers (name, Postgres port, REST port).
    pub fn haproxy_backends(&self) -> Vec<crate::haproxy::Backend> {
        self.nodes
            .iter()
            .map(|n| crate::haproxy::Backend {
                name: n.name.clone(),
                pg_port: n.pg_port,
                api_port: n.api_port,
            })
            .collect()
    }

    /// A [`Writer`] through a proxy's port (HAProxy's primary port), as an
    /// application writes: see [`Writer::through_proxy`].
    pub fn proxy_writer(&self, port: u16) -> Writer {
        Writer::through_proxy(port, self.endpoints())
    }

    /// A [`Writer`] on every node at once: the split-brain detector.
    pub fn prober(&self) -> Writer {
        Writer::every_node(self.endpoints())
    }

    // --- operations ----------------------------------------------------------

    /// A switchover request as Patroni's fallback makes one (and as
    /// `patronictl switchover` does without a REST API to call): the
    /// `failover` key written in etcd, `{"leader": …, "member": …}`. The
    /// leader demotes and releases the lock; the candidate (or the best
    /// replica) takes it. Returns when etcd acknowledged the write.
    pub async fn request_switchover(&self, leader: &str, candidate: Option<&str>) -> Instant {
        let mut value = serde_json::json!({ "leader": leader });
        if let Some(candidate) = candidate {
            value["member"] = serde_json::json!(candidate);
        }
        let key = Keys::new(NAMESPACE, &self.options.scope).failover();
        let mut client = etcd_client::Client::connect([self.etcd.endpoint.as_str()], None)
            .await
            .unwrap_or_else(|e| panic!("connect to etcd: {e}"));
        let at = Instant::now();
        client
            .put(key, value.to_string(), None)
            .await
            .unwrap_or_else(|e| panic!("write the failover key: {e}"));
        at
    }

    /// SIGSTOP to the agent (its Postgres runs on): a frozen process, whose
    /// REST API accepts connections and never answers.
    pub fn freeze_agent(&self, node: &str) -> Instant {
        let pid = self.node(node).agent_pid().unwrap_or_else(|| panic!("{node}: no agent to freeze"));
        assert!(procs::signal(&[pid], "STOP"), "kill -STOP {pid} ({node}) failed");
        Instant::now()
    }

    /// SIGCONT to a frozen agent.
    pub fn thaw_agent(&self, node: &str) {
        let pid = self.node(node).agent_pid().unwrap_or_else(|| panic!("{node}: no agent to thaw"));
        assert!(procs::signal(&[pid], "CONT"), "kill -CONT {pid} ({node}) failed");
    }

    // --- faults ------------------------------------------------------------

    /// SIGKILL to the agent, by PID. Its Postgres is left to what the agent
    /// arranged (a parent-death signal, rule 7). Returns when it was sent.
    pub fn kill_agent(&mut self, node: &str) -> Instant {
        let index = self.index(node);
        let node = &mut self.nodes[index];
        let mut child = node.child.take().unwrap_or_else(|| panic!("{}: no agent to kill", node.name));
        node.expected_running = false;
        let at = Instant::now();
        let _ = child.kill();
        let _ = child.wait();
        at
    }

    /// SIGKILL to the postmaster of `node` only (the PID in
    /// `postmaster.pid`); see [`procs::kill_postmaster`]. `None` when no
    /// postmaster was running.
    pub fn kill_postmaster(&self, node: &str) -> Option<u32> {
        procs::kill_postmaster(&self.node(node).data_dir)
    }

    /// SIGTERM to the agent: it should stop Postgres, release the leader
    /// key and exit 0. Returns when it was sent; see
    /// [`KeelCluster::wait_agent_exit`].
    pub fn terminate_agent(&mut self, node: &str) -> Instant {
        let index = self.index(node);
        let node = &mut self.nodes[index];
        let pid = node.agent_pid().unwrap_or_else(|| panic!("{}: no agent to stop", node.name));
        node.expected_running = false;
        let at = Instant::now();
        assert!(procs::signal(&[pid], "TERM"), "kill -TERM {pid} ({}) failed", node.name);
        at
    }

    /// Waits for the agent to exit, for at most `timeout` (then panics;
    /// the drop kills it).
    pub async fn wait_agent_exit(&mut self, node: &str, timeout: Duration) -> ExitStatus {
        let index = self.index(node);
        let deadline = Instant::now() + timeout;
        loop {
            let node = &mut self.nodes[index];
            let child = node.child.as_mut().unwrap_or_else(|| panic!("{}: no agent", node.name));
            if let Some(status) = child.try_wait().expect("wait for the agent") {
                node.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "the agent of {} did not exit within {timeout:?}", node.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then waits for the agent to exit.
    pub async fn stop_agent(&mut self, node: &str, timeout: Duration) -> ExitStatus {
        self.terminate_agent(node);
        self.wait_agent_exit(node, timeout).await
    }

    /// Starts the agent of `node` again, on the same config and data.
    pub fn restart_agent(&mut self, node: &str) {
        let index = self.index(node);
        if let Some(child) = self.nodes[index].child.as_mut() {
            match child.try_wait().expect("wait for the agent") {
                Some(_) => self.nodes[index].child = None,
                None => panic!("{node}: the agent still runs (pid {})", child.id()),
            }
        }
        self.spawn_agent(index);
    }

    /// An etcd outage (SIGKILL); returns when it began.
    pub fn etcd_stop(&mut self) -> Instant {
        let at = Instant::now();
        self.etcd.stop();
        at
    }

    /// The end of the outage: etcd again on the same port and data.
    pub fn etcd_start(&mut self) -> Instant {
        self.etcd.restart();
        Instant::now()
    }

    /// Cuts `node` (its agent only) from etcd: needs `etcd_proxies`.
    pub fn cut_etcd(&self, node: &str) -> Instant {
        self.proxy(node).cut();
        Instant::now()
    }

    pub fn heal_etcd(&self, node: &str) {
        self.proxy(node).heal();
    }

    // --- logs --------------------------------------------------------------

    /// The end of every node's logs and of etcd's, on stderr.
    pub fn print_logs(&self) {
        for node in &self.nodes {
            eprintln!(
                "--- last lines of {}'s agent log ({}) ---\n{}",
                node.name,
                node.log_path.display(),
                node.log_tail(80)
            );
            for (path, text) in other_logs(&node.dir) {
                eprintln!("--- last lines of {} ---\n{}", path.display(), tail(&text, 30));
            }
        }
        eprintln!("--- last lines of etcd's log ---\n{}", tail(&self.etcd.log(), 20));
    }

    // --- internals ---------------------------------------------------------

    fn index(&self, name: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name:?} (nodes: {:?})", self.names()))
    }

    fn proxy(&self, name: &str) -> &EtcdProxy {
        self.node(name).proxy.as_ref().expect("cut_etcd and heal_etcd need ClusterOptions::etcd_proxies")
    }

    /// Fails the test at once when an agent that should run is gone: it
    /// exited on its own (its log says why).
    fn assert_agents_alive(&self) {
        for node in self.nodes.iter().filter(|n| n.expected_running) {
            if let Some(pid) = node.agent_pid() {
                assert!(procs::is_alive(pid), "the agent of {} (pid {pid}) exited on its own", node.name);
            }
        }
    }

    /// Runs the agent as the Postgres user, from its directory, with its
    /// output appended to its log, and with a parent-death signal (SIGKILL
    /// when the thread that started it exits), so that an agent outlives
    /// neither the test process nor, since the harness starts agents on the
    /// test's own thread, the test.
    fn spawn_agent(&mut self, index: usize) {
        let node = &mut self.nodes[index];
        assert!(node.child.is_none(), "{}: an agent already runs", node.name);
        let base = match self.options.agent_command {
            Some(command) => command(&node.config_path),
            None => {
                let mut command = Command::new(keel_bin());
                command.arg("--config").arg(&node.config_path);
                command
            }
        };
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "SIGKILL", "--"]).arg(base.get_program()).args(base.get_args());
        // PATRONI_* variables would override the config file.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PATRONI_") {
                command.env_remove(key);
            }
        }
        for (key, value) in base.get_envs() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        use std::io::Write as _;
        let mut log =
            std::fs::OpenOptions::new().append(true).open(&node.log_path).expect("open the node's log");
        let since = self.started.elapsed().as_secs_f64();
        let _ = writeln!(log, "=== keel-tests: starting the agent of {} at +{since:.2}s ===", node.name);
        let err = log.try_clone().expect("clone the log handle");
        command.env("HOME", &node.dir).current_dir(&node.dir).stdin(Stdio::null()).stdout(log).stderr(err);
        // Its own process group, so that a Ctrl-C meant for keel-dev does
        // not reach the agents (keel-dev stops them by PID).
        command.process_group(0);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("starting the agent of {} ({:?}): {e}", node.name, base.get_program())
        });
        node.child = Some(child);
        node.expected_running = true;
    }
}

impl Drop for KeelCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        // Agents first, with everything they started (postmasters, and
        // whatever ran under them: pg_basebackup, pg_rewind, single-user
        // recovery), so that nothing restarts what is killed next.
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                procs::kill_tree(child.id());
                let _ = child.wait();
            }
        }
        // Postmasters whose agent was killed earlier (orphans).
        for node in &self.nodes {
            if let Some(pid) = node.postmaster_pid() {
                procs::kill_tree(pid);
            }
        }
        // Anything else naming the scratch directory on its command line.
        for pid in procs::processes_mentioning(self.root.path()) {
            procs::kill_tree(pid);
        }
        let left = procs::processes_mentioning(self.root.path());
        if !left.is_empty() {
            let described: Vec<String> =
                left.iter().map(|&p| format!("{p}: {}", procs::cmdline(p))).collect();
            eprintln!(
                "keel-tests: processes left running under {}: {described:#?}",
                self.root.path().display()
            );
        }
        for node in &mut self.nodes {
            node.proxy = None;
        }
        self.etcd.stop();
        // `root` (the scratch directories) goes with the fields.
    }
}

/// One cluster at a time per test process (module documentation).
async fn exclusive() -> OwnedMutexGuard<()> {
    static LOCK: OnceLock<Arc<tokio::sync::Mutex<()>>> = OnceLock::new();
    Arc::clone(LOCK.get_or_init(Arc::default)).lock_owned().await
}

/// The harness's own reader of etcd.
async fn observer(etcd: &EtcdServer, scope: &str) -> Dcs<EtcdKv> {
    let opts = EtcdOptions {
        endpoints: vec![etcd.endpoint.clone()],
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let kv = EtcdKv::connect(&opts).await.expect("connect to the test etcd");
    Dcs::new(kv, Keys::new(NAMESPACE, scope), "keel-tests-observer", "", "")
}

fn make_dir(path: &Path, mode: u32, owner: Option<(u32, u32)>) {
    std::fs::create_dir_all(path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    chown(path, owner);
}

fn chown(path: &Path, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to the Postgres user: {e}", path.display()));
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Other `*.log` files in a node's directory and in its data directory's
/// `log/` (a server log, if the agent does not send it to its own output).
fn other_logs(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    for folder in [dir.to_owned(), dir.join("data").join("log")] {
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let is_log =
                path.extension().is_some_and(|e| e == "log") && path.file_name() != Some("keel.log".as_ref());
            if is_log {
                let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap_or_default()).into_owned();
                found.push((path, text));
            }
        }
    }
    found
}
