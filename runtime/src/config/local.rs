//! The sections of the local YAML file (reference sections 3.1 and 3.3-3.6,
//! Patroni `docs/yaml_configuration.rst`).
//!
//! Every option Patroni documents has a field, even where keel does not act
//! on it yet, so that only real typos produce unknown-key warnings. Options
//! keel ignores are kept as loosely typed values.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use keel_core::Tags;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Unexpected, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::de as lenient;
use super::dynamic::DynamicSettings;

/// `restapi`: Patroni's REST API server.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct RestApi {
    /// `host:port` to bind.
    pub listen: String,
    /// `host:port` other members use; published as the member's `api_url`.
    pub connect_address: Option<String>,
    /// Basic auth for the unsafe endpoints.
    pub authentication: Option<Auth>,
    #[serde(deserialize_with = "lenient::opt_path")]
    pub certfile: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_path")]
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<String>,
    #[serde(deserialize_with = "lenient::opt_path")]
    pub cafile: Option<PathBuf>,
    pub ciphers: Option<String>,
    pub verify_client: Option<VerifyClient>,
    /// Hosts or CIDRs allowed to call unsafe endpoints; empty allows all.
    pub allowlist: Vec<String>,
    #[serde(deserialize_with = "lenient::flag")]
    pub allowlist_include_members: bool,
    pub http_extra_headers: BTreeMap<String, String>,
    pub https_extra_headers: BTreeMap<String, String>,
    /// Listen backlog (Patroni default 5, range 0..=4096).
    #[serde(deserialize_with = "lenient::int")]
    pub request_queue_size: i64,
    /// `original`, `productonly` or `minimal`.
    pub server_tokens: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt_int")]
    pub thread_pool_size: Option<i64>,
}

/// A username and password (`restapi.authentication`, `ctl.authentication`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Auth {
    pub username: String,
    pub password: String,
}

/// `restapi.verify_client`: when client certificates are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyClient {
    None,
    /// Only for the unsafe endpoints.
    Optional,
    Required,
}

/// `ctl`: patronictl's client settings. keel's CLI reads them later.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Ctl {
    pub authentication: Option<Auth>,
    #[serde(deserialize_with = "lenient::flag")]
    pub insecure: bool,
    #[serde(deserialize_with = "lenient::opt_path")]
    pub cacert: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_path")]
    pub certfile: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_path")]
    pub keyfile: Option<PathBuf>,
    pub keyfile_password: Option<String>,
}

/// `etcd3`: how to reach etcd (v3 API).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Etcd3 {
    /// `host:port` endpoints: `hosts` (a YAML list or a comma-separated
    /// string), or else the single `host`, as Patroni prefers `hosts`.
    pub hosts: Vec<String>,
    pub protocol: EtcdProtocol,
    pub username: Option<String>,
    pub password: Option<String>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Patroni options keel does not use yet (no topology discovery, no SRV
    /// lookup): kept so that they are not reported as typos.
    pub use_proxies: bool,
    pub url: Option<String>,
    pub proxy: Option<String>,
    pub srv: Option<String>,
    pub srv_suffix: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EtcdProtocol {
    #[default]
    Http,
    Https,
}

/// `etcd3` as written, before `host` and `hosts` are merged.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Etcd3File {
    host: Option<String>,
    #[serde(deserialize_with = "lenient::host_list")]
    hosts: Vec<String>,
    protocol: EtcdProtocol,
    username: Option<String>,
    password: Option<String>,
    #[serde(deserialize_with = "lenient::opt_path")]
    cacert: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_path")]
    cert: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::opt_path")]
    key: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::flag")]
    use_proxies: bool,
    url: Option<String>,
    proxy: Option<String>,
    srv: Option<String>,
    srv_suffix: Option<String>,
}

/// A host without a port gets etcd's client port, 2379, as Patroni's
/// `split_host_port(host, 2379)` gives it: `etcd1` is `etcd1:2379`,
/// `[::1]` is `[::1]:2379`. Anything else is kept as written, for the
/// checks to judge.
fn with_etcd_port(host: &str) -> String {
    let bare_name = !host.is_empty() && !host.contains(':');
    let bracketed_v6 = host.starts_with('[') && host.ends_with(']');
    if bare_name || bracketed_v6 {
        format!("{host}:2379")
    } else {
        host.to_owned()
    }
}

impl<'de> Deserialize<'de> for Etcd3 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let file = Etcd3File::deserialize(deserializer)?;
        let hosts = if file.hosts.is_empty() { file.host.into_iter().collect() } else { file.hosts };
        let hosts = hosts.into_iter().map(|h| with_etcd_port(&h)).collect();
        Ok(Etcd3 {
            hosts,
            protocol: file.protocol,
            username: file.username,
            password: file.password,
            cacert: file.cacert,
            cert: file.cert,
            key: file.key,
            use_proxies: file.use_proxies,
            url: file.url,
            proxy: file.proxy,
            srv: file.srv,
            srv_suffix: file.srv_suffix,
        })
    }
}

/// `bootstrap`: how a new cluster is created.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Bootstrap {
    /// The cluster's settings at bootstrap, as keel reads them.
    pub dcs: DynamicSettings,
    /// `bootstrap.dcs` as the file (and environment) wrote it: what the
    /// node that bootstraps the cluster writes to etcd's `config` key, as
    /// Patroni does (no defaults filled in, no keys of keel's).
    #[serde(skip)]
    pub dcs_as_written: Value,
    /// `initdb` (the default) or the name of a custom method section.
    pub method: Option<String>,
    #[serde(deserialize_with = "initdb_options")]
    pub initdb: Vec<InitdbOption>,
    /// Pre-2.0 Patroni's place for pg_hba lines; still read by Patroni.
    pub pg_hba: Vec<String>,
    /// Deprecated in Patroni; kept as written.
    pub users: Option<Value>,
    pub post_bootstrap: Option<String>,
    pub post_init: Option<String>,
    /// Custom bootstrap method sections, named by `method`
    /// (`bootstrap.<method>.command`, ...).
    #[serde(flatten)]
    pub methods: BTreeMap<String, Value>,
}

impl Bootstrap {
    /// The `config` key the node that bootstraps the cluster writes:
    /// `bootstrap.dcs` as written. A configuration built in code rather
    /// than read from a file has no written form: its settings then.
    pub fn config_key_json(&self) -> Vec<u8> {
        match &self.dcs_as_written {
            written @ Value::Object(_) => serde_json::to_vec(written),
            _ => serde_json::to_vec(&self.dcs),
        }
        .unwrap_or_else(|_| b"{}".to_vec())
    }
}

/// One `bootstrap.initdb` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitdbOption {
    /// `- data-checksums`
    Flag(String),
    /// `- encoding: UTF8`
    Value { name: String, value: String },
}

impl InitdbOption {
    /// The initdb argument, as Patroni builds it: `--data-checksums`,
    /// `--encoding=UTF8`.
    pub fn to_arg(&self) -> String {
        match self {
            InitdbOption::Flag(name) => format!("--{name}"),
            InitdbOption::Value { name, value } => format!("--{name}={value}"),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            InitdbOption::Flag(name) | InitdbOption::Value { name, .. } => name,
        }
    }
}

/// `postgresql`: the local Postgres instance.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default)]
pub struct Postgresql {
    /// `host[,host...]:port` Postgres listens on.
    pub listen: String,
    /// `host:port` other members connect to; published as `conn_url`.
    pub connect_address: Option<String>,
    pub proxy_address: Option<String>,
    pub data_dir: PathBuf,
    /// Defaults to `data_dir`.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub config_dir: Option<PathBuf>,
    /// Empty or absent: binaries are looked up in `PATH`.
    #[serde(deserialize_with = "lenient::opt_path")]
    pub bin_dir: Option<PathBuf>,
    pub bin_name: BinName,
    #[serde(deserialize_with = "lenient::opt_path")]
    pub pgpass: Option<PathBuf>,
    pub authentication: PgAuthentication,
    pub callbacks: Callbacks,
    pub create_replica_methods: Vec<String>,
    pub basebackup: Option<Value>,
    pub rewind: Option<Value>,
    #[serde(deserialize_with = "lenient::flag")]
    pub remove_data_directory_on_rewind_failure: bool,
    #[serde(deserialize_with = "lenient::flag")]
    pub remove_data_directory_on_diverged_timelines: bool,
    /// Fencing script run after taking the lock, before promoting.
    pub pre_promote: Option<String>,
    pub before_stop: Option<String>,
    /// Seconds pg_ctl waits on start, stop and restart (Patroni default 60).
    #[serde(deserialize_with = "lenient::int")]
    pub pg_ctl_timeout: i64,
    #[serde(deserialize_with = "lenient::flag")]
    pub use_unix_socket: bool,
    #[serde(deserialize_with = "lenient::flag")]
    pub use_unix_socket_repl: bool,
    pub custom_conf: Option<String>,
    /// GUCs, any value.
    pub parameters: BTreeMap<String, Value>,
    pub parameters_primary: Option<BTreeMap<String, Value>>,
    pub parameters_replica: Option<BTreeMap<String, Value>>,
    pub parameters_standby_leader: Option<BTreeMap<String, Value>>,
    pub pg_hba: Vec<String>,
    pub pg_hba_primary: Option<Vec<String>>,
    pub pg_hba_replica: Option<Vec<String>>,
    pub pg_hba_standby_leader: Option<Vec<String>>,
    pub pg_ident: Vec<String>,
    pub pg_ident_primary: Option<Vec<String>>,
    pub pg_ident_replica: Option<Vec<String>>,
    pub pg_ident_standby_leader: Option<Vec<String>>,
    pub pg_hosts: Option<Vec<String>>,
    pub pg_hosts_primary: Option<Vec<String>>,
    pub pg_hosts_replica: Option<Vec<String>>,
    pub pg_hosts_standby_leader: Option<Vec<String>>,
    pub recovery_conf: Option<BTreeMap<String, Value>>,
    /// Local overrides of the dynamic `postgresql.use_pg_rewind` and
    /// `use_slots`; absent means the dynamic value applies.
    pub use_pg_rewind: Option<bool>,
    pub use_slots: Option<bool>,
    /// Custom replica creation method sections, named by
    /// `create_replica_methods` (`postgresql.<method>.command`, ...).
    #[serde(flatten)]
    pub replica_methods: BTreeMap<String, Value>,
}

/// Every key of the local `postgresql` section. Patroni also accepts them in
/// the dynamic `postgresql` section (except the addresses, paths and
/// credentials, which it ignores there), so they are not typos there either.
pub(crate) const POSTGRESQL_KEYS: &[&str] = &[
    "listen",
    "connect_address",
    "proxy_address",
    "data_dir",
    "config_dir",
    "bin_dir",
    "bin_name",
    "pgpass",
    "authentication",
    "callbacks",
    "create_replica_methods",
    "basebackup",
    "rewind",
    "remove_data_directory_on_rewind_failure",
    "remove_data_directory_on_diverged_timelines",
    "pre_promote",
    "before_stop",
    "pg_ctl_timeout",
    "use_unix_socket",
    "use_unix_socket_repl",
    "custom_conf",
    "parameters",
    "parameters_primary",
    "parameters_replica",
    "parameters_standby_leader",
    "pg_hba",
    "pg_hba_primary",
    "pg_hba_replica",
    "pg_hba_standby_leader",
    "pg_ident",
    "pg_ident_primary",
    "pg_ident_replica",
    "pg_ident_standby_leader",
    "pg_hosts",
    "pg_hosts_primary",
    "pg_hosts_replica",
    "pg_hosts_standby_leader",
    "recovery_conf",
    "use_pg_rewind",
    "use_slots",
];

/// `postgresql.bin_name`: custom names of the Postgres binaries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BinName {
    pub pg_ctl: Option<String>,
    pub initdb: Option<String>,
    pub pg_controldata: Option<String>,
    pub pg_basebackup: Option<String>,
    pub postgres: Option<String>,
    pub pg_isready: Option<String>,
    pub pg_rewind: Option<String>,
}

/// `postgresql.authentication`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PgAuthentication {
    pub superuser: PgUser,
    pub replication: PgUser,
    /// pg_rewind's user (PostgreSQL 11+); the superuser when absent.
    pub rewind: Option<PgUser>,
}

/// A Postgres user and its libpq connection options.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PgUser {
    pub username: String,
    pub password: Option<String>,
    pub sslmode: Option<String>,
    pub sslkey: Option<String>,
    pub sslpassword: Option<String>,
    pub sslcert: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcrl: Option<String>,
    pub sslcrldir: Option<String>,
    pub gssencmode: Option<String>,
    pub channel_binding: Option<String>,
}

/// `postgresql.callbacks`: scripts run with `action role scope`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Callbacks {
    pub on_start: Option<String>,
    pub on_stop: Option<String>,
    pub on_restart: Option<String>,
    pub on_reload: Option<String>,
    pub on_role_change: Option<String>,
}

/// `tags` (reference section 3.5, Patroni `tags.py`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TagsConfig {
    /// Kept as an option: when written, it wins over `failover_priority`.
    pub nofailover: Option<bool>,
    pub failover_priority: Option<i64>,
    pub nosync: bool,
    pub sync_priority: Option<i64>,
    pub noloadbalance: bool,
    pub clonefrom: bool,
    pub replicatefrom: Option<String>,
    pub nostream: bool,
    /// Custom tags, any value: visible in the REST API and `patronictl list`.
    #[serde(flatten)]
    pub custom: BTreeMap<String, Value>,
}

impl TagsConfig {
    /// The core's tags, with Patroni's semantics: an explicit `nofailover`
    /// wins over `failover_priority`; without it, a priority of 0 or less
    /// means no failover; the default priority is 1. A `sync_priority` of 0
    /// or less means `nosync`.
    ///
    /// One case cannot be expressed in the core: `nofailover: false` with a
    /// priority of 0 or less lets Patroni race at priority 0, but the core
    /// never promotes at priority 0. keel keeps the race (the boolean wins)
    /// at priority 1, and `parse` warns about the conflict.
    pub fn to_core(&self) -> Tags {
        let (nofailover, failover_priority) = match self.nofailover {
            Some(true) => (true, 0),
            Some(false) => (false, self.failover_priority.unwrap_or(1).max(1)),
            None => {
                let priority = self.failover_priority.unwrap_or(1);
                (priority <= 0, priority)
            }
        };
        Tags {
            nofailover,
            failover_priority,
            nosync: self.nosync || self.sync_priority.is_some_and(|p| p <= 0),
            noloadbalance: self.noloadbalance,
            replicatefrom: self.replicatefrom.clone(),
            clonefrom: self.clonefrom,
        }
    }

    /// The tags a member publishes in its `members/<name>` key, as Patroni's
    /// `_filter_tags` does: the boolean tags only when true, every other tag
    /// as written.
    pub fn to_member_tags(&self) -> BTreeMap<String, Value> {
        let mut tags = self.custom.clone();
        let switches = [
            ("nofailover", self.nofailover.unwrap_or(false)),
            ("nosync", self.nosync),
            ("noloadbalance", self.noloadbalance),
            ("clonefrom", self.clonefrom),
            ("nostream", self.nostream),
        ];
        for (name, on) in switches {
            if on {
                tags.insert(name.to_string(), Value::Bool(true));
            }
        }
        let numbers = [("failover_priority", self.failover_priority), ("sync_priority", self.sync_priority)];
        for (name, number) in numbers {
            if let Some(number) = number {
                tags.insert(name.to_string(), Value::from(number));
            }
        }
        if let Some(source) = &self.replicatefrom {
            tags.insert("replicatefrom".to_string(), Value::from(source.clone()));
        }
        tags
    }
}

/// `watchdog` (reference section 3.6).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Watchdog {
    pub mode: WatchdogMode,
    pub device: PathBuf,
    /// Seconds between the watchdog firing and the lease expiring; -1 means
    /// the watchdog fires at ttl/2.
    #[serde(deserialize_with = "lenient::int")]
    pub safety_margin: i64,
    /// Patroni's test driver (`testing`); not used by keel.
    pub driver: Option<String>,
}

impl Default for Watchdog {
    fn default() -> Self {
        // Patroni's defaults (`watchdog/base.py`).
        Watchdog {
            mode: WatchdogMode::Automatic,
            device: PathBuf::from("/dev/watchdog"),
            safety_margin: 5,
            driver: None,
        }
    }
}

/// `watchdog.mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WatchdogMode {
    Off,
    /// Use a watchdog when one can be opened.
    #[default]
    Automatic,
    /// Never lead without a working watchdog.
    Required,
}

/// `log`: Patroni's logging. keel logs through `tracing` to its standard
/// error and honours `level` and `type`; every other key set is accepted
/// (it is not a typo) and warned about at startup ([`Log::unhonoured`]).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Log {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub level: Option<String>,
    pub traceback_level: Option<String>,
    pub format: Option<Value>,
    pub dateformat: Option<String>,
    pub static_fields: Option<Value>,
    pub max_queue_size: Option<Value>,
    pub dir: Option<String>,
    pub mode: Option<Value>,
    pub file_num: Option<Value>,
    pub file_size: Option<Value>,
    pub loggers: Option<BTreeMap<String, Value>>,
    pub deduplicate_heartbeat_logs: Option<Value>,
}

impl Log {
    /// The `tracing` level of `level` (Python's level names, which Patroni
    /// takes, in any case); `None` when unset. CRITICAL and FATAL log at
    /// ERROR, `tracing`'s highest level; the checks refuse other names.
    pub fn tracing_level(&self) -> Option<&'static str> {
        let level = self.level.as_deref()?.to_ascii_uppercase();
        match level.as_str() {
            "DEBUG" => Some("debug"),
            "INFO" => Some("info"),
            "WARN" | "WARNING" => Some("warn"),
            "ERROR" | "CRITICAL" | "FATAL" => Some("error"),
            _ => None,
        }
    }

    /// `type: json` (Patroni 4's JSON logs): keel's JSON lines, as with
    /// `--log-json`.
    pub fn json(&self) -> bool {
        self.kind.as_deref().is_some_and(|kind| kind.eq_ignore_ascii_case("json"))
    }

    /// The keys set in the file that keel does not honour, with why:
    /// `(path, what keel does instead)`.
    pub fn unhonoured(&self) -> Vec<(&'static str, &'static str)> {
        const FORMAT: &str = "keel's log lines have a fixed format";
        const FILES: &str = "keel logs to its standard error only, not to files";
        const NONE: &str = "no equivalent in keel";
        let set = [
            ("log.traceback_level", self.traceback_level.is_some(), NONE),
            ("log.format", self.format.is_some(), FORMAT),
            ("log.dateformat", self.dateformat.is_some(), FORMAT),
            ("log.static_fields", self.static_fields.is_some(), FORMAT),
            ("log.max_queue_size", self.max_queue_size.is_some(), NONE),
            ("log.dir", self.dir.is_some(), FILES),
            ("log.mode", self.mode.is_some(), FILES),
            ("log.file_num", self.file_num.is_some(), FILES),
            ("log.file_size", self.file_size.is_some(), FILES),
            ("log.loggers", self.loggers.is_some(), "KEEL_LOG sets levels per module"),
            ("log.deduplicate_heartbeat_logs", self.deduplicate_heartbeat_logs.is_some(), NONE),
        ];
        set.into_iter().filter(|(_, on, _)| *on).map(|(path, _, why)| (path, why)).collect()
    }
}

/// `citus`: Patroni's Citus integration, not supported by keel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Citus {
    pub group: i64,
    pub database: String,
}

impl Default for RestApi {
    fn default() -> Self {
        RestApi {
            listen: Default::default(),
            connect_address: Default::default(),
            authentication: Default::default(),
            certfile: Default::default(),
            keyfile: Default::default(),
            keyfile_password: Default::default(),
            cafile: Default::default(),
            ciphers: Default::default(),
            verify_client: Default::default(),
            allowlist: Default::default(),
            allowlist_include_members: Default::default(),
            http_extra_headers: Default::default(),
            https_extra_headers: Default::default(),
            // Patroni's listen backlog.
            request_queue_size: 5,
            server_tokens: Default::default(),
            thread_pool_size: Default::default(),
        }
    }
}

impl Default for Postgresql {
    fn default() -> Self {
        Postgresql {
            listen: Default::default(),
            connect_address: Default::default(),
            proxy_address: Default::default(),
            data_dir: Default::default(),
            config_dir: Default::default(),
            bin_dir: Default::default(),
            bin_name: Default::default(),
            pgpass: Default::default(),
            authentication: Default::default(),
            callbacks: Default::default(),
            create_replica_methods: Default::default(),
            basebackup: Default::default(),
            rewind: Default::default(),
            remove_data_directory_on_rewind_failure: Default::default(),
            remove_data_directory_on_diverged_timelines: Default::default(),
            pre_promote: Default::default(),
            before_stop: Default::default(),
            // Patroni's default, in seconds.
            pg_ctl_timeout: 60,
            use_unix_socket: Default::default(),
            use_unix_socket_repl: Default::default(),
            custom_conf: Default::default(),
            parameters: Default::default(),
            parameters_primary: Default::default(),
            parameters_replica: Default::default(),
            parameters_standby_leader: Default::default(),
            pg_hba: Default::default(),
            pg_hba_primary: Default::default(),
            pg_hba_replica: Default::default(),
            pg_hba_standby_leader: Default::default(),
            pg_ident: Default::default(),
            pg_ident_primary: Default::default(),
            pg_ident_replica: Default::default(),
            pg_ident_standby_leader: Default::default(),
            pg_hosts: Default::default(),
            pg_hosts_primary: Default::default(),
            pg_hosts_replica: Default::default(),
            pg_hosts_standby_leader: Default::default(),
            recovery_conf: Default::default(),
            use_pg_rewind: Default::default(),
            use_slots: Default::default(),
            replica_methods: Default::default(),
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth").field("username", &self.username).field("password", &"<redacted>").finish()
    }
}

impl fmt::Debug for PgUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgUser")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("sslmode", &self.sslmode)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Etcd3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Etcd3")
            .field("hosts", &self.hosts)
            .field("protocol", &self.protocol)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("cacert", &self.cacert)
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl<'de> Deserialize<'de> for WatchdogMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WatchdogModeVisitor)
    }
}

struct WatchdogModeVisitor;

impl<'de> Visitor<'de> for WatchdogModeVisitor {
    type Value = WatchdogMode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("off, automatic or required")
    }

    /// YAML reads `mode: off` as `false`, and Patroni takes `false` for off.
    /// Patroni's validator refuses `true` (`validate_watchdog_mode`), and so
    /// does keel: guessing between automatic and required is not safe.
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<WatchdogMode, E> {
        if v {
            return Err(E::invalid_value(Unexpected::Bool(true), &self));
        }
        Ok(WatchdogMode::Off)
    }

    /// Patroni's `parse_mode` spellings, case-insensitive.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<WatchdogMode, E> {
        match v.trim().to_ascii_lowercase().as_str() {
            "off" | "disable" | "disabled" => Ok(WatchdogMode::Off),
            "auto" | "automatic" => Ok(WatchdogMode::Automatic),
            "require" | "required" => Ok(WatchdogMode::Required),
            _ => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

/// `bootstrap.initdb`: a list of flags and one-key mappings, or one mapping
/// (Patroni's `process_user_options` takes both).
fn initdb_options<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<InitdbOption>, D::Error> {
    deserializer.deserialize_any(InitdbListVisitor)
}

struct InitdbListVisitor;

impl<'de> Visitor<'de> for InitdbListVisitor {
    type Value = Vec<InitdbOption>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of initdb options")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<InitdbOption>, A::Error> {
        let mut options = Vec::new();
        while let Some(option) = seq.next_element::<InitdbOption>()? {
            options.push(option);
        }
        Ok(options)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<InitdbOption>, A::Error> {
        let mut options = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Value>()? {
            options.push(InitdbOption::Value { name, value: initdb_value::<A::Error>(value)? });
        }
        Ok(options)
    }
}

impl<'de> Deserialize<'de> for InitdbOption {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(InitdbOptionVisitor)
    }
}

struct InitdbOptionVisitor;

impl<'de> Visitor<'de> for InitdbOptionVisitor {
    type Value = InitdbOption;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an initdb flag (data-checksums) or one name: value pair (encoding: UTF8)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<InitdbOption, E> {
        Ok(InitdbOption::Flag(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InitdbOption, A::Error> {
        let Some((name, value)) = map.next_entry::<String, Value>()? else {
            return Err(de::Error::invalid_length(0, &self));
        };
        if map.next_key::<String>()?.is_some() {
            return Err(de::Error::custom("only one name: value pair is allowed per initdb entry"));
        }
        Ok(InitdbOption::Value { name, value: initdb_value::<A::Error>(value)? })
    }
}

/// Patroni wants strings; numbers (`wal-segsize: 64`) are taken as written.
fn initdb_value<E: de::Error>(value: Value) -> Result<String, E> {
    match value {
        Value::String(text) => Ok(text),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(E::custom(format!("an initdb value must be a string, not {}", super::kind_of(&other)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(value: Value) -> TagsConfig {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn default_tags_race_at_priority_one() {
        let core = TagsConfig::default().to_core();
        assert!(!core.nofailover);
        assert_eq!(core.failover_priority, 1);
    }

    #[test]
    fn explicit_nofailover_wins_over_priority() {
        let off = tags(json!({"nofailover": true, "failover_priority": 5})).to_core();
        assert!(off.nofailover);
        assert_eq!(off.failover_priority, 0);
        let on = tags(json!({"nofailover": false, "failover_priority": 0})).to_core();
        assert!(on.can_fail_over());
        assert_eq!(on.failover_priority, 1);
    }

    #[test]
    fn zero_priority_without_nofailover_means_no_failover() {
        let core = tags(json!({"failover_priority": 0})).to_core();
        assert!(core.nofailover);
        assert!(!core.can_fail_over());
    }

    #[test]
    fn zero_sync_priority_means_nosync() {
        assert!(tags(json!({"sync_priority": 0})).to_core().nosync);
        assert!(!tags(json!({"sync_priority": 2})).to_core().nosync);
    }

    #[test]
    fn member_tags_keep_custom_tags_and_true_switches_only() {
        let config =
            tags(json!({"nosync": false, "noloadbalance": true, "failover_priority": 3, "dc": "eu"}));
        let published = config.to_member_tags();
        assert_eq!(
            Value::Object(published.into_iter().collect()),
            json!({"noloadbalance": true, "failover_priority": 3, "dc": "eu"})
        );
    }

    #[test]
    fn watchdog_modes_follow_patronis_spellings() {
        let mode = |v: Value| serde_json::from_value::<WatchdogMode>(v).ok();
        assert_eq!(mode(json!(false)), Some(WatchdogMode::Off));
        assert_eq!(mode(json!("Disabled")), Some(WatchdogMode::Off));
        assert_eq!(mode(json!("auto")), Some(WatchdogMode::Automatic));
        assert_eq!(mode(json!("require")), Some(WatchdogMode::Required));
        assert_eq!(mode(json!(true)), None);
        assert_eq!(mode(json!("sometimes")), None);
    }

    #[test]
    fn initdb_takes_flags_pairs_and_a_mapping() {
        let list: Vec<InitdbOption> =
            initdb_options(json!(["data-checksums", {"encoding": "UTF8"}, {"wal-segsize": 64}])).unwrap();
        let args: Vec<String> = list.iter().map(InitdbOption::to_arg).collect();
        assert_eq!(args, ["--data-checksums", "--encoding=UTF8", "--wal-segsize=64"]);
        let map: Vec<InitdbOption> = initdb_options(json!({"locale": "C"})).unwrap();
        assert_eq!(map[0].to_arg(), "--locale=C");
        assert!(initdb_options(json!([{"a": "1", "b": "2"}])).is_err());
        assert!(initdb_options(json!([{"a": ["x"]}])).is_err());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let auth = Auth { username: "u".into(), password: "hunter2".into() };
        assert!(!format!("{auth:?}").contains("hunter2"));
        let user = PgUser { password: Some("hunter2".into()), ..PgUser::default() };
        assert!(!format!("{user:?}").contains("hunter2"));
    }
}
