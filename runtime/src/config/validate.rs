//! Checks of a typed [`Config`] (reference section 3.8), and the warnings
//! that need the whole configuration to see.
//!
//! Errors carry the key's dotted path and say what was expected and what was
//! found. These checks do not touch the machine; `keel --validate-config`
//! adds those that read it (`data_dir`, `bin_dir`, certificates: the
//! `machine` module), and the agent binds the listen addresses when it starts.

use super::local::{BinName, POSTGRESQL_KEYS};
use super::{Config, ConfigError};

/// Names keel and Patroni put in `synchronous_standby_names` when strict
/// synchronous mode has no standby: a member by that name would be taken
/// for a real synchronous standby.
pub const STRICT_SYNC_PLACEHOLDERS: [&str; 2] =
    ["__patroni_strict_sync_replica_placeholder__", "__keel_strict_sync_placeholder__"];

/// initdb options keel (like Patroni) sets itself (`process_user_options`).
const INITDB_RESERVED: [&str; 5] = ["pgdata", "nosync", "pwfile", "sync-only", "version"];

/// DCS sections Patroni knows and keel does not speak.
const OTHER_DCS: [&str; 6] = ["etcd", "consul", "zookeeper", "exhibitor", "kubernetes", "raft"];

impl Config {
    /// The first problem of [`Config::problems`]: what `load` refuses with.
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        first(self.problems())
    }

    /// Every failed check, in the order of the file's sections, so that
    /// `keel --validate-config` can list them all.
    pub(super) fn problems(&self) -> Vec<ConfigError> {
        let mut found = Vec::new();
        self.check_identity(&mut found);
        self.check_postgresql(&mut found);
        self.check_restapi(&mut found);
        self.check_etcd3(&mut found);
        self.check_bootstrap(&mut found);
        self.check_log(&mut found);
        if self.watchdog.safety_margin < -1 {
            let reason = format!("must be >= -1 (-1 means ttl/2), got {}", self.watchdog.safety_margin);
            found.push(ConfigError::new("watchdog.safety_margin", reason));
        }
        // Citus keeps each group under its own DCS prefix; running a Citus
        // member without that layout would collide with the other groups.
        if self.citus.is_some() {
            found.push(ConfigError::new("citus", "Citus clusters are not supported by keel"));
        }
        found
    }

    /// keelctl's checks (`load_for_ctl`): what names the cluster and etcd.
    pub(super) fn validate_for_ctl(&self) -> Result<(), ConfigError> {
        if self.scope.contains('/') {
            return Err(ConfigError::new("scope", format!("must not contain '/', got {:?}", self.scope)));
        }
        required("namespace", &self.namespace)?;
        let mut found = Vec::new();
        if !self.etcd3.hosts.is_empty() {
            self.check_etcd3(&mut found);
        }
        first(found)
    }

    fn check_identity(&self, found: &mut Vec<ConfigError>) {
        for (key, value) in [("scope", &self.scope), ("name", &self.name)] {
            // Both become one segment of an etcd key (`members/<name>`).
            let check = required(key, value).and_then(|()| {
                if value.contains('/') {
                    return Err(ConfigError::new(key, format!("must not contain '/', got {value:?}")));
                }
                Ok(())
            });
            found.extend(check.err());
        }
        if STRICT_SYNC_PLACEHOLDERS.contains(&self.name.as_str()) {
            let reason = format!("{:?} is reserved for strict synchronous mode", self.name);
            found.push(ConfigError::new("name", reason));
        }
        found.extend(required("namespace", &self.namespace).err());
    }

    fn check_postgresql(&self, found: &mut Vec<ConfigError>) {
        let pg = &self.postgresql;
        let listen = required("postgresql.listen", &pg.listen).and_then(|()| {
            check_address("postgresql.listen", &pg.listen, Use::Listen { multiple_hosts: true })
        });
        found.extend(listen.err());
        if let Some(address) = &pg.connect_address {
            found.extend(check_address("postgresql.connect_address", address, Use::Connect).err());
        }
        if let Some(address) = &pg.proxy_address {
            found.extend(check_address("postgresql.proxy_address", address, Use::Connect).err());
        }
        if pg.data_dir.as_os_str().is_empty() {
            found.push(ConfigError::new("postgresql.data_dir", "is required"));
        }
        if pg.pg_ctl_timeout < 1 {
            let reason = format!("must be >= 1 second, got {}", pg.pg_ctl_timeout);
            found.push(ConfigError::new("postgresql.pg_ctl_timeout", reason));
        }
        if let Some(rewind) = &pg.authentication.rewind {
            found.extend(required("postgresql.authentication.rewind.username", &rewind.username).err());
        }
    }

    /// `log.level` and `log.type`, which keel honours: a value keel would
    /// not know how to honour is refused, as Patroni's logging refuses it.
    fn check_log(&self, found: &mut Vec<ConfigError>) {
        let log = &self.log;
        if let Some(level) = &log.level {
            if log.tracing_level().is_none() {
                let reason = format!("expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {level:?}");
                found.push(ConfigError::new("log.level", reason));
            }
        }
        if let Some(kind) = &log.kind {
            if !kind.eq_ignore_ascii_case("plain") && !kind.eq_ignore_ascii_case("json") {
                found.push(ConfigError::new("log.type", format!("expected plain or json, got {kind:?}")));
            }
        }
    }

    /// The agent's warnings about `log`: every key set that keel does not
    /// honour, and a level keel can only approach. keelctl does not log
    /// through `log`, so it does not hear them.
    pub(super) fn log_warnings(&self) -> Vec<String> {
        let log = &self.log;
        let mut warnings: Vec<String> =
            log.unhonoured().into_iter().map(|(path, why)| format!("{path}: not honoured, {why}")).collect();
        let level = log.level.as_deref().unwrap_or_default();
        if ["CRITICAL", "FATAL"].iter().any(|name| level.eq_ignore_ascii_case(name)) {
            warnings.insert(0, format!("log.level: {level} is logged as ERROR, keel's highest level"));
        }
        warnings
    }

    fn check_restapi(&self, found: &mut Vec<ConfigError>) {
        let api = &self.restapi;
        let listen = required("restapi.listen", &api.listen).and_then(|()| {
            check_address("restapi.listen", &api.listen, Use::Listen { multiple_hosts: false })
        });
        found.extend(listen.err());
        if let Some(address) = &api.connect_address {
            found.extend(check_address("restapi.connect_address", address, Use::Connect).err());
        }
        // Patroni's range (`validator.py`).
        if !(0..=4096).contains(&api.request_queue_size) {
            let reason = format!("must be in 0..=4096, got {}", api.request_queue_size);
            found.push(ConfigError::new("restapi.request_queue_size", reason));
        }
    }

    /// At least one host, each `host:port` (a host written without a port
    /// has 2379 by now, as in Patroni).
    fn check_etcd3(&self, found: &mut Vec<ConfigError>) {
        if self.etcd3.hosts.is_empty() {
            let mut reason = "at least one etcd3 host is required (etcd3.hosts or etcd3.host)".to_string();
            if let Some(other) = self.other_dcs_sections().first() {
                reason.push_str(&format!("; keel talks to etcd v3 only, not through `{other}`"));
            }
            found.push(ConfigError::new("etcd3.hosts", reason));
        }
        for (index, host) in self.etcd3.hosts.iter().enumerate() {
            let path = format!("etcd3.hosts[{index}]");
            let check = if host.is_empty() {
                Err(ConfigError::new(&path, "is empty"))
            } else {
                check_address(&path, host, Use::Connect)
            };
            found.extend(check.err());
        }
    }

    fn check_bootstrap(&self, found: &mut Vec<ConfigError>) {
        found.extend(self.bootstrap.dcs.problems().into_iter().map(|e| e.under("bootstrap.dcs")));
        for (index, option) in self.bootstrap.initdb.iter().enumerate() {
            if INITDB_RESERVED.contains(&option.name()) {
                let reason = format!("`{}` is set by keel itself and cannot be given", option.to_arg());
                found.push(ConfigError::new(format!("bootstrap.initdb[{index}]"), reason));
            }
        }
    }

    /// Patroni's other DCS sections present in the file.
    pub fn other_dcs_sections(&self) -> Vec<&'static str> {
        let present = [
            self.etcd.is_some(),
            self.consul.is_some(),
            self.zookeeper.is_some(),
            self.exhibitor.is_some(),
            self.kubernetes.is_some(),
            self.raft.is_some(),
        ];
        OTHER_DCS.iter().zip(present).filter(|(_, on)| *on).map(|(name, _)| *name).collect()
    }

    /// Warnings only the whole typed configuration can give: keys that
    /// landed in a free-form map but name nothing, ignored sections, and
    /// conflicting tags. Each reads `<path>: <what>`.
    pub(super) fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        let method = self.bootstrap.method.as_deref();
        for key in self.bootstrap.methods.keys().filter(|key| Some(key.as_str()) != method) {
            warnings.push(format!("bootstrap.{key}: unknown key, ignored"));
        }
        let replica_methods = self.replica_method_names();
        for key in self.postgresql.replica_methods.keys().filter(|key| !replica_methods.contains(key)) {
            warnings.push(format!("postgresql.{key}: unknown key, ignored"));
        }
        let dcs = &self.bootstrap.dcs;
        for key in dcs.extra.keys() {
            warnings.push(format!("bootstrap.dcs.{key}: unknown key, written to etcd as is"));
        }
        for key in dcs.postgresql.extra.keys().filter(|key| !POSTGRESQL_KEYS.contains(&key.as_str())) {
            warnings.push(format!("bootstrap.dcs.postgresql.{key}: unknown key, written to etcd as is"));
        }
        for section in self.other_dcs_sections() {
            warnings.push(format!("{section}: ignored, keel talks to etcd v3 only (the etcd3 section)"));
        }
        let etcd3 = &self.etcd3;
        let discovery = [
            ("url", &etcd3.url),
            ("proxy", &etcd3.proxy),
            ("srv", &etcd3.srv),
            ("srv_suffix", &etcd3.srv_suffix),
        ];
        for (key, _) in discovery.iter().filter(|(_, value)| value.is_some()) {
            warnings.push(format!("etcd3.{key}: not honoured, keel reaches etcd through etcd3.hosts only"));
        }
        if self.postgresql.bin_name != BinName::default() {
            warnings.push(
                "postgresql.bin_name: not honoured, keel runs the binaries of bin_dir by their usual names"
                    .into(),
            );
        }
        warnings.extend(self.tag_warnings());
        warnings
    }

    /// Method names that may have a section under `postgresql`: the local
    /// list and the standby cluster's.
    fn replica_method_names(&self) -> Vec<String> {
        let mut names = self.postgresql.create_replica_methods.clone();
        let standby_methods = self
            .bootstrap
            .dcs
            .standby_cluster
            .as_ref()
            .and_then(|standby| standby.get("create_replica_methods"))
            .and_then(|methods| methods.as_array());
        for method in standby_methods.into_iter().flatten() {
            if let Some(name) = method.as_str() {
                names.push(name.to_string());
            }
        }
        names
    }

    fn tag_warnings(&self) -> Option<String> {
        let tags = &self.tags;
        let priority = tags.failover_priority?;
        match tags.nofailover {
            Some(true) if priority > 0 => Some(format!(
                "tags.failover_priority: {priority} is ignored, nofailover: true wins (as in Patroni)"
            )),
            Some(false) if priority <= 0 => Some(format!(
                "tags.failover_priority: {priority} conflicts with nofailover: false; the boolean wins, \
                 and keel races at priority 1"
            )),
            _ => None,
        }
    }
}

/// The first of `found`, as an error.
fn first(found: Vec<ConfigError>) -> Result<(), ConfigError> {
    found.into_iter().next().map_or(Ok(()), Err)
}

fn required(path: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::new(path, "is required"));
    }
    Ok(())
}

/// What an address is for.
#[derive(Clone, Copy)]
enum Use {
    /// Bound locally. Postgres takes several hosts before the one port
    /// (`127.0.0.1,10.0.0.5:5432`).
    Listen { multiple_hosts: bool },
    /// Dialled by other members: a wildcard cannot be dialled.
    Connect,
}

/// Checks `host:port` as Patroni's `split_host_port` reads it: the port after
/// the last colon, IPv6 hosts in brackets.
///
/// Unlike Patroni, a loopback connect address is allowed: keel's own tests
/// run whole clusters on one machine.
fn check_address(path: &str, address: &str, usage: Use) -> Result<(), ConfigError> {
    let refuse = |reason: String| Err(ConfigError::new(path, reason));
    let Some((hosts, port)) = address.rsplit_once(':') else {
        return refuse(format!("expected host:port, got {address:?}"));
    };
    let port_ok = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit());
    if !port_ok || !matches!(port.parse::<u16>(), Ok(1..)) {
        return refuse(format!("port must be 1..=65535, got {port:?} in {address:?}"));
    }
    let hosts: Vec<&str> = match usage {
        Use::Listen { multiple_hosts: true } => hosts.split(',').collect(),
        _ => vec![hosts],
    };
    for host in &hosts {
        check_host(host).or_else(|reason| refuse(format!("{reason} in {address:?}")))?;
    }
    if hosts.len() > 1 && hosts.contains(&"*") {
        return refuse(format!("'*' must be the only host, got {address:?}"));
    }
    if let (Use::Connect, Some(host)) = (usage, hosts.first()) {
        if ["*", "0.0.0.0", "[::]"].contains(host) {
            return refuse(format!("must be an address other members can reach, not the wildcard {host}"));
        }
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() || host == "[]" {
        return Err("empty host".to_string());
    }
    if host.chars().any(char::is_whitespace) {
        return Err(format!("host {host:?} contains whitespace"));
    }
    let bracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let bare = bracketed.unwrap_or(host);
    if bare.contains(['[', ']', ',']) || (bracketed.is_none() && host.contains(':')) {
        return Err(format!("host {host:?} is not a name or address (IPv6 needs brackets: [::1]:5432)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen(address: &str) -> Result<(), ConfigError> {
        check_address("x", address, Use::Listen { multiple_hosts: true })
    }

    fn connect(address: &str) -> Result<(), ConfigError> {
        check_address("x", address, Use::Connect)
    }

    #[test]
    fn good_addresses_pass() {
        for address in ["127.0.0.1:5432", "*:5432", "0.0.0.0:1", "[::1]:65535", "db1,10.0.0.5:5432", "a.b:80"]
        {
            assert_eq!(listen(address), Ok(()), "{address}");
        }
        assert_eq!(connect("127.0.0.1:5432"), Ok(()));
        assert_eq!(connect("pg-1.example.com:5432"), Ok(()));
    }

    #[test]
    fn bad_addresses_say_why() {
        let cases = [
            ("127.0.0.1", "expected host:port"),
            ("127.0.0.1:", "port must be"),
            ("127.0.0.1:0", "port must be"),
            ("127.0.0.1:65536", "port must be"),
            ("127.0.0.1:+80", "port must be"),
            (":5432", "empty host"),
            ("::1:5432", "IPv6 needs brackets"),
            ("a b:5432", "whitespace"),
            ("*,10.0.0.1:5432", "'*' must be the only host"),
            ("a,,b:5432", "empty host"),
        ];
        for (address, expected) in cases {
            let err = listen(address).unwrap_err();
            assert!(err.reason.contains(expected), "{address}: {err}");
        }
    }

    #[test]
    fn connect_address_refuses_wildcards_and_host_lists() {
        for address in ["0.0.0.0:5432", "*:5432", "[::]:5432"] {
            assert!(connect(address).unwrap_err().reason.contains("wildcard"), "{address}");
        }
        assert!(connect("a,b:5432").unwrap_err().reason.contains("not a name or address"));
    }
}
