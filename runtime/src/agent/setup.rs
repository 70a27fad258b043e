//! What the agent derives once from the local configuration: how to reach
//! Postgres, the server settings keel writes, and how to reach a member.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, DynamicPostgresql, PgUser};
use crate::pg::{ConnTarget, PgCtl, ServerConfig, Upstream};

/// `host:port` split at the last colon.
pub fn host_port(address: &str) -> Option<(String, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    Some((host.trim_matches(['[', ']']).to_owned(), port.parse().ok()?))
}

/// A GUC value as postgresql.conf spells it.
pub fn guc(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "on".into(),
        Value::Bool(false) => "off".into(),
        other => other.to_string(),
    }
}

pub struct Setup {
    pub ctl: PgCtl,
    /// What the local file says of `postgresql.parameters`, `pg_hba` and
    /// `pg_ident`: it wins over the dynamic configuration.
    pub local: LocalPgFiles,
    /// Said once at start: local parameters that have no effect.
    pub warnings: Vec<String>,
    pub conn: ConnTarget,
    pub server: ServerConfig,
    pub conn_url: String,
    pub api_url: String,
    pub initdb: Vec<String>,
    /// One physical replication slot per member (Patroni's `use_slots`).
    pub use_slots: bool,
}

impl Setup {
    pub fn new(cfg: &Config) -> Result<Setup, String> {
        let pg = &cfg.postgresql;
        let (listen_host, port) = host_port(&pg.listen).ok_or("postgresql.listen is not host:port")?;
        let connect = pg.connect_address.clone().unwrap_or_else(|| format!("{listen_host}:{port}"));
        let bin_dir = pg.bin_dir.clone().unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"));
        let mut ctl = PgCtl::new(bin_dir, pg.data_dir.clone());
        ctl.command_timeout = Duration::from_secs(u64::try_from(pg.pg_ctl_timeout).unwrap_or(60).max(1));
        let (local, warnings) = LocalPgFiles::new(cfg);
        // Until the agent reads etcd's `config` key, bootstrap.dcs stands
        // for it (it is what a bootstrap writes there).
        let mut files = local.merge(&cfg.bootstrap.dcs.postgresql);
        let mut server = ServerConfig::new(&cfg.name, port);
        server.listen_addresses = listen_host;
        if let Some(dir) = files.parameters.remove("unix_socket_directories") {
            server.socket_dir = PathBuf::from(dir.split(',').next().unwrap_or_default().trim());
        }
        files.apply_to(&mut server);
        let superuser = &pg.authentication.superuser;
        let mut conn = ConnTarget::socket(&server.socket_dir, port, &superuser.username);
        conn.password = superuser.password.clone();
        let api = cfg.restapi.connect_address.clone().unwrap_or_else(|| cfg.restapi.listen.clone());
        let use_slots = pg.use_slots.unwrap_or(cfg.bootstrap.dcs.postgresql.use_slots);
        if use_slots {
            server.primary_slot_name = Some(super::slots::slot_name(&cfg.name));
        }
        Ok(Setup {
            ctl,
            local,
            warnings,
            conn,
            server,
            conn_url: format!("postgres://{connect}/postgres"),
            // HTTPS when the API serves TLS (restapi.certfile), as Patroni.
            api_url: format!(
                "{}://{api}/patroni",
                if cfg.restapi.certfile.is_some() { "https" } else { "http" }
            ),
            initdb: cfg.bootstrap.initdb.iter().map(|o| o.to_arg()).collect(),
            use_slots,
        })
    }
}

/// Parameters that must hold the same value on every member (a standby
/// refuses to run with less than its primary): as in Patroni, only the
/// dynamic configuration sets them, and the local file's have no effect.
/// keel sets `wal_level` itself (`pg::control::KEEL_OWNED_SETTINGS`).
pub const SAME_ON_EVERY_MEMBER: [&str; 5] = [
    "max_connections",
    "max_locks_per_transaction",
    "max_worker_processes",
    "max_prepared_transactions",
    "track_commit_timestamp",
];

/// The local file's `postgresql.parameters`, `pg_hba` and `pg_ident`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalPgFiles {
    /// Without [`SAME_ON_EVERY_MEMBER`].
    pub parameters: BTreeMap<String, String>,
    /// Empty: not set locally (Patroni cannot tell an empty list from none
    /// in a file either: it writes no line then).
    pub hba: Vec<String>,
    pub ident: Vec<String>,
    /// Pre-2.0 Patroni's `bootstrap.pg_hba`, used when neither the local
    /// file nor the dynamic configuration has `pg_hba`.
    pub legacy_hba: Vec<String>,
}

/// What keel writes into postgresql.conf, pg_hba.conf and pg_ident.conf
/// from the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PgFiles {
    pub parameters: BTreeMap<String, String>,
    pub hba: Vec<String>,
    pub ident: Vec<String>,
}

impl LocalPgFiles {
    /// The local part of `cfg`, and a warning for each local parameter that
    /// has no effect.
    pub fn new(cfg: &Config) -> (LocalPgFiles, Vec<String>) {
        let pg = &cfg.postgresql;
        let mut warnings = Vec::new();
        let mut parameters = BTreeMap::new();
        for (name, value) in &pg.parameters {
            if SAME_ON_EVERY_MEMBER.iter().any(|same| same.eq_ignore_ascii_case(name)) {
                warnings.push(format!(
                    "postgresql.parameters.{name}: must be the same on every member, so only the dynamic \
                     configuration sets it (bootstrap.dcs, keelctl edit-config); the local value has no effect"
                ));
                continue;
            }
            parameters.insert(name.clone(), guc(value));
        }
        let local = LocalPgFiles {
            parameters,
            hba: pg.pg_hba.clone(),
            ident: pg.pg_ident.clone(),
            legacy_hba: cfg.bootstrap.pg_hba.clone(),
        };
        (local, warnings)
    }

    /// Patroni's effective configuration: the dynamic parameters with the
    /// local ones over them (`config.py`, `_build_effective_configuration`);
    /// the local `pg_hba` and `pg_ident` when set, else the dynamic ones.
    pub fn merge(&self, dynamic: &DynamicPostgresql) -> PgFiles {
        let mut parameters: BTreeMap<String, String> =
            dynamic.parameters.iter().map(|(k, v)| (k.clone(), guc(v))).collect();
        parameters.extend(self.parameters.iter().map(|(k, v)| (k.clone(), v.clone())));
        let hba = match (&self.hba, &dynamic.pg_hba) {
            (local, _) if !local.is_empty() => local.clone(),
            (_, Some(dynamic)) => dynamic.clone(),
            _ => self.legacy_hba.clone(),
        };
        let ident = match (&self.ident, &dynamic.pg_ident) {
            (local, _) if !local.is_empty() => local.clone(),
            (_, Some(dynamic)) => dynamic.clone(),
            _ => Vec::new(),
        };
        PgFiles { parameters, hba, ident }
    }
}

impl PgFiles {
    /// Puts these files' contents into `server` (what keel writes).
    /// `unix_socket_directories` is left out: the agent reaches Postgres
    /// through the socket directory it started with ([`Setup::new`]).
    pub fn apply_to(mut self, server: &mut ServerConfig) {
        self.parameters.remove("unix_socket_directories");
        server.parameters = self.parameters;
        server.hba = self.hba;
        server.ident = self.ident;
    }
}

/// How to reach `member` from its published `conn_url`, as `user`.
pub fn upstream(member: &str, conn_url: &str, user: &PgUser) -> Option<Upstream> {
    let rest = conn_url.strip_prefix("postgres://").or_else(|| conn_url.strip_prefix("postgresql://"))?;
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = host_port(authority)?;
    Some(Upstream {
        member: member.to_owned(),
        host,
        port,
        user: user.username.clone(),
        password: user.password.clone(),
        options: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_url_of_a_member_becomes_an_upstream() {
        let user = PgUser { username: "replicator".into(), password: Some("pw".into()), ..PgUser::default() };
        let up = upstream("pg2", "postgres://10.0.0.12:5433/postgres", &user).unwrap();
        assert_eq!((up.host.as_str(), up.port, up.user.as_str()), ("10.0.0.12", 5433, "replicator"));
        assert!(upstream("pg2", "http://x", &user).is_none());
        assert!(upstream("pg2", "postgres://host-without-port/postgres", &user).is_none());
    }

    fn config(postgresql: &str) -> Config {
        let yaml = format!(
            "scope: s\nname: pg1\nrestapi:\n  listen: 127.0.0.1:8008\netcd3:\n  hosts: 127.0.0.1:2379\n\
             bootstrap:\n  pg_hba:\n    - legacy all all trust\n\
             postgresql:\n  listen: 127.0.0.1:5432\n  data_dir: /d\n{postgresql}"
        );
        crate::config::parse(&yaml, &BTreeMap::new()).expect("valid config").config
    }

    fn dynamic(json: serde_json::Value) -> DynamicPostgresql {
        serde_json::from_value(json).expect("valid dynamic postgresql section")
    }

    #[test]
    fn local_parameters_win_over_dynamic_ones() {
        let cfg = config("  parameters:\n    work_mem: 4MB\n    log_min_duration_statement: 100\n");
        let (local, warnings) = LocalPgFiles::new(&cfg);
        assert!(warnings.is_empty(), "{warnings:?}");
        let files = local.merge(&dynamic(serde_json::json!({
            "parameters": {"work_mem": "8MB", "shared_buffers": "256MB", "hot_standby_feedback": true}
        })));
        let expected: BTreeMap<String, String> = [
            ("hot_standby_feedback", "on"),
            ("log_min_duration_statement", "100"),
            ("shared_buffers", "256MB"),
            ("work_mem", "4MB"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(files.parameters, expected);
    }

    #[test]
    fn local_values_of_parameters_every_member_shares_have_no_effect() {
        let cfg = config("  parameters:\n    max_connections: 500\n    max_prepared_transactions: 10\n");
        let (local, warnings) = LocalPgFiles::new(&cfg);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0]
            .starts_with("postgresql.parameters.max_connections: must be the same on every member"));
        let files = local.merge(&dynamic(serde_json::json!({"parameters": {"max_connections": 200}})));
        assert_eq!(files.parameters.get("max_connections").map(String::as_str), Some("200"));
        assert!(!files.parameters.contains_key("max_prepared_transactions"));
    }

    #[test]
    fn local_pg_hba_and_pg_ident_win_else_the_dynamic_ones_else_bootstrap_pg_hba() {
        let none = config("");
        let (local, _) = LocalPgFiles::new(&none);
        let with_dynamic = dynamic(serde_json::json!({
            "pg_hba": ["host all all 0.0.0.0/0 md5"], "pg_ident": ["map os db"]
        }));
        let files = local.merge(&with_dynamic);
        assert_eq!(files.hba, ["host all all 0.0.0.0/0 md5"]);
        assert_eq!(files.ident, ["map os db"]);
        let files = local.merge(&dynamic(serde_json::json!({})));
        assert_eq!(files.hba, ["legacy all all trust"]);
        assert!(files.ident.is_empty());

        let own = config("  pg_hba:\n    - local all all peer\n  pg_ident:\n    - m a b\n");
        let (local, _) = LocalPgFiles::new(&own);
        let files = local.merge(&with_dynamic);
        assert_eq!(
            (files.hba, files.ident),
            (vec!["local all all peer".to_owned()], vec!["m a b".to_owned()])
        );
    }

    #[test]
    fn socket_directory_stays_as_the_agent_started() {
        let cfg = config("  parameters:\n    unix_socket_directories: /run/a\n");
        let setup = Setup::new(&cfg).expect("setup");
        assert_eq!(setup.server.socket_dir, PathBuf::from("/run/a"));
        let mut server = setup.server.clone();
        let mut files = setup.local.merge(&dynamic(serde_json::json!({"parameters": {"work_mem": "8MB"}})));
        files.parameters.insert("unix_socket_directories".into(), "/elsewhere".into());
        files.apply_to(&mut server);
        assert_eq!(server.socket_dir, PathBuf::from("/run/a"));
        assert!(!server.parameters.contains_key("unix_socket_directories"));
        assert_eq!(server.parameters.get("work_mem").map(String::as_str), Some("8MB"));
    }

    #[test]
    fn gucs_render_as_postgresql_conf_spells_them() {
        assert_eq!(guc(&Value::Bool(true)), "on");
        assert_eq!(guc(&serde_json::json!(200)), "200");
        assert_eq!(guc(&serde_json::json!("16GB")), "16GB");
    }
}
