//! What the agent derives once from the local configuration: how to reach
//! Postgres, the server settings keel writes, and how to reach a member.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::config::{Config, PgUser};
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
        let mut parameters: BTreeMap<String, String> =
            cfg.bootstrap.dcs.postgresql.parameters.iter().map(|(k, v)| (k.clone(), guc(v))).collect();
        parameters.extend(pg.parameters.iter().map(|(k, v)| (k.clone(), guc(v))));
        let mut server = ServerConfig::new(&cfg.name, port);
        server.listen_addresses = listen_host;
        if let Some(dir) = parameters.remove("unix_socket_directories") {
            server.socket_dir = PathBuf::from(dir.split(',').next().unwrap_or_default().trim());
        }
        server.parameters = parameters;
        server.hba = if pg.pg_hba.is_empty() { cfg.bootstrap.pg_hba.clone() } else { pg.pg_hba.clone() };
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

    #[test]
    fn gucs_render_as_postgresql_conf_spells_them() {
        assert_eq!(guc(&Value::Bool(true)), "on");
        assert_eq!(guc(&serde_json::json!(200)), "200");
        assert_eq!(guc(&serde_json::json!("16GB")), "16GB");
    }
}
