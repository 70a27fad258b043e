//! A PostgreSQL server on loopback (Debian's `postgresql-15`, or the
//! binaries in `KEEL_PG_BIN`), in a scratch directory of its own, on a free
//! port.
//!
//! Postgres refuses to run as root, so when the tests run as root every
//! binary runs as the `postgres` OS user (or `KEEL_PG_USER`), and the data
//! directory is created for that user. Dropping a [`PgNode`] stops its
//! server with `pg_ctl stop -m immediate`, also when the test failed (and
//! then prints the end of the server log).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use keel_runtime::pg::{ConnTarget, PgCtl, ServerConfig, Upstream};

use crate::scratch::{free_port, Scratch};

/// Generous: these are the deadlines of a loaded two-core machine.
pub const PG_TIMEOUT: Duration = Duration::from_secs(30);

pub struct PgNode {
    pub name: String,
    pub port: u16,
    pub ctl: PgCtl,
    dir: Scratch,
}

impl PgNode {
    /// An empty data directory owned by the Postgres user and a free port;
    /// nothing runs yet.
    pub fn new(name: &str) -> PgNode {
        let dir = Scratch::new(&format!("pg-{name}"));
        let data_dir = dir.path().join("data");
        let ctl = pg_ctl(&data_dir, &dir.path().join("postgres.log"));
        for path in [&data_dir, &dir.path().join("socket")] {
            std::fs::create_dir(path).expect("data or socket directory");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
            if let Some((uid, gid)) = ctl.run_as {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown to the Postgres user");
            }
        }
        PgNode { name: name.to_owned(), port: free_port(), ctl, dir }
    }

    /// `initdb` with checksums, trust authentication and no fsync (tests
    /// only).
    pub async fn initdb(&self) {
        let options =
            ["--data-checksums", "--encoding=UTF8", "--auth=trust", "--no-sync", "--no-instructions"];
        let options: Vec<String> = options.iter().map(|o| (*o).to_owned()).collect();
        self.ctl
            .initdb(&options, PG_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("initdb of {}: {e}", self.name));
    }

    /// keel's config for this node: TCP on 127.0.0.1 and a socket in the
    /// scratch directory, trust for everyone on loopback, small and
    /// unsynced.
    pub fn config(&self) -> ServerConfig {
        let mut config = ServerConfig::new(&self.name, self.port);
        config.listen_addresses = "127.0.0.1".into();
        config.socket_dir = self.socket_dir();
        for (name, value) in [("fsync", "off"), ("shared_buffers", "16MB"), ("max_connections", "20")] {
            config.parameters.insert(name.into(), value.into());
        }
        config.hba = vec![
            "local all all trust".into(),
            "local replication all trust".into(),
            "host all all 127.0.0.1/32 trust".into(),
            "host replication all 127.0.0.1/32 trust".into(),
        ];
        config
    }

    /// This node as a standby's upstream.
    pub fn upstream(&self) -> Upstream {
        Upstream {
            member: self.name.clone(),
            host: "127.0.0.1".into(),
            port: self.port,
            user: "postgres".into(),
            password: None,
            options: Default::default(),
        }
    }

    /// A conninfo for pg_basebackup and pg_rewind from this node.
    pub fn conninfo(&self) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname=postgres", self.port)
    }

    /// The superuser over the unix socket.
    pub fn conn(&self) -> ConnTarget {
        ConnTarget::socket(&self.socket_dir(), self.port, "postgres")
    }

    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// Writes `config` (with this node's port) and starts the server; if a
    /// racing process took the port, moves to another, at most 5 times.
    pub async fn start(&mut self, mut config: ServerConfig) {
        for _ in 0..5 {
            config.port = self.port;
            self.ctl.write_config(&config).expect("write postgresql.conf");
            match self.ctl.start(PG_TIMEOUT).await {
                Ok(()) => return,
                Err(e) if e.to_string().contains("Address already in use") => self.port = free_port(),
                Err(e) => panic!("starting {}: {e}", self.name),
            }
        }
        panic!("{} found no free port in 5 attempts", self.name);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for PgNode {
    fn drop(&mut self) {
        if self.ctl.is_running() {
            let mut stop = Command::new(self.ctl.bin_dir.join("pg_ctl"));
            stop.arg("-D").arg(&self.ctl.data_dir).args(["stop", "-m", "immediate", "-w", "-t", "20"]);
            stop.current_dir("/").stdout(Stdio::null());
            if let Some((uid, gid)) = self.ctl.run_as {
                stop.uid(uid).gid(gid);
            }
            let _ = stop.status();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("--- last lines of {}'s server log ---\n{}", self.name, tail.join("\n"));
        }
    }
}

/// A [`PgCtl`] on `data_dir` as the tests run it: the installed binaries,
/// the Postgres user when running as root, the server log in `server_log`.
pub fn pg_ctl(data_dir: &Path, server_log: &Path) -> PgCtl {
    let bin_dir = std::env::var_os("KEEL_PG_BIN")
        .map_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"), PathBuf::from);
    assert!(
        bin_dir.join("postgres").exists(),
        "no postgres in {} (install postgresql-15)",
        bin_dir.display()
    );
    let mut ctl = PgCtl::new(bin_dir, data_dir);
    ctl.server_log = Some(server_log.to_owned());
    ctl.run_as = running_as_root().then(postgres_user);
    ctl
}

/// The owner of `/proc/self` is this process's effective user.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `(uid, gid)` of the Postgres OS user, from `/etc/passwd`.
fn postgres_user() -> (u32, u32) {
    let user = std::env::var("KEEL_PG_USER").unwrap_or_else(|_| "postgres".into());
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user.as_str()))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .unwrap_or_else(|| panic!("no OS user {user:?} to run Postgres as (tests run as root)"))
}
