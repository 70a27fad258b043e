//! [`PgCtl`]: the Postgres server binaries (`initdb`, `postgres`, `pg_ctl`,
//! `pg_controldata`, `pg_basebackup`, `pg_rewind`) run on one data
//! directory, each with a deadline, each failure carrying the command's
//! stderr. Also keel's own `postgresql.conf`, `pg_hba.conf` and
//! `standby.signal`.
//!
//! # The postmaster dies with the agent (safety rule 7)
//!
//! `pg_ctl start` daemonizes: the postmaster would outlive a killed agent
//! and stay writable after the leader lease has expired. So [`PgCtl::start`]
//! runs `postgres` itself, as a direct child, wrapped in util-linux's
//! `setpriv --pdeathsig SIGQUIT`, which sets `PR_SET_PDEATHSIG` and then
//! execs `postgres` (the same PID). Setting it from Rust would need
//! `CommandExt::pre_exec`, which is `unsafe`, and the workspace forbids
//! unsafe code. When the agent dies, by any signal including SIGKILL, the
//! kernel sends the postmaster SIGQUIT: an immediate shutdown, which drops
//! every connection at once and writes no checkpoint (the next start runs
//! crash recovery).
//!
//! The parent-death signal fires when the *thread* that forked the child
//! exits, not the process. Tokio's blocking-pool threads exit when idle, so
//! the postmaster is forked from a thread of its own that then only waits
//! for it: that thread lives exactly as long as the postmaster, unless the
//! whole agent dies. The child also gets its own process group, so a Ctrl-C
//! at the agent's terminal does not reach it (Patroni does the same).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::{ControlState, StopMode, SyncNames};
use tokio::io::AsyncReadExt;

use super::controldata::{parse_controldata, ControldataError, PgControl};
use super::probe::checkpointed_on_current_timeline;
use super::sync_names::format_sync_names;

/// The server binaries on one data directory.
#[derive(Clone, Debug)]
pub struct PgCtl {
    /// Holds `postgres`, `pg_ctl`, `initdb`, … (`/usr/lib/postgresql/15/bin`).
    pub bin_dir: PathBuf,
    pub data_dir: PathBuf,
    /// Run every binary as this `(uid, gid)` (keel running as root, as the
    /// tests do); `None` runs them as the agent's own user, as production
    /// keel (running as `postgres`) does.
    pub run_as: Option<(u32, u32)>,
    /// The deadline of quick commands: `pg_ctl reload`, `pg_controldata`.
    pub command_timeout: Duration,
    /// Where the postmaster's stdout and stderr go (appended); `None`
    /// inherits the agent's.
    pub server_log: Option<PathBuf>,
    /// util-linux's `setpriv`, used to give the postmaster its parent-death
    /// signal (see the module documentation). `None` starts Postgres
    /// without one: it then outlives a killed agent, breaking rule 7
    /// unless a watchdog covers it.
    pub setpriv: Option<PathBuf>,
    /// The postmaster this process started (shared by clones).
    child: Arc<Child>,
}

/// The postmaster [`PgCtl::start`] forked, while it runs, and a wake-up
/// when it exits, from the thread that waits for it.
#[derive(Debug, Default)]
struct Child {
    pid: Mutex<Option<u32>>,
    /// `postmaster.pid` was seen naming the running child: until it exits
    /// (the thread waiting for it clears `pid` then), it is the postmaster,
    /// and [`PgCtl::postmaster_pid`] need not read two files to say so.
    confirmed: std::sync::atomic::AtomicBool,
    exited: tokio::sync::Notify,
}

/// What is in the data directory, without running anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataDirState {
    Missing,
    /// Nothing but hidden files or `lost+found` (Patroni's
    /// `data_directory_empty`).
    Empty,
    /// `PG_VERSION` and `global/pg_control` exist. A base backup writes
    /// `pg_control` last, so a half-made copy is not `Initialised`.
    Initialised,
    /// Something else: a failed initdb or base backup. Nothing to start,
    /// and pg_basebackup refuses it too; it has to be moved aside.
    Incomplete,
}

#[derive(Debug)]
pub enum PgCtlError {
    /// The binary could not be run at all.
    Spawn {
        command: String,
        error: String,
    },
    /// It ran and failed.
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    /// It did not finish before its deadline and was killed (or, for
    /// `start`, left starting).
    Timeout {
        command: String,
        after: Duration,
        stderr: String,
    },
    /// Not attempted: the data directory or the server is not in a state
    /// where the operation makes sense.
    Refused(String),
    /// Reading or writing a file keel owns.
    Io {
        path: PathBuf,
        error: String,
    },
    Controldata(ControldataError),
}

impl fmt::Display for PgCtlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PgCtlError::Spawn { command, error } => write!(f, "cannot run {command}: {error}"),
            PgCtlError::Failed { command, status, stderr } => {
                write!(f, "{command} failed ({status}): {stderr}")
            }
            PgCtlError::Timeout { command, after, stderr } => {
                write!(f, "{command} did not finish within {} s: {stderr}", after.as_secs_f64())
            }
            PgCtlError::Refused(why) => f.write_str(why),
            PgCtlError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            PgCtlError::Controldata(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PgCtlError {}

impl From<ControldataError> for PgCtlError {
    fn from(e: ControldataError) -> PgCtlError {
        PgCtlError::Controldata(e)
    }
}

/// keel's `postgresql.conf`: the settings keel owns, then the user's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// This member's name: `application_name` in `primary_conninfo`, which
    /// `synchronous_standby_names` and `pg_stat_replication` use.
    pub member: String,
    pub listen_addresses: String,
    pub port: u16,
    /// `unix_socket_directories`. Not the data directory: pg_rewind
    /// copies every file of the source's data directory and fails on a
    /// socket there ("could not open file .s.PGSQL.5432").
    pub socket_dir: PathBuf,
    pub max_wal_senders: u32,
    pub max_replication_slots: u32,
    pub wal_keep_size_mb: u64,
    pub sync_standby_names: SyncNames,
    /// Whom to stream from when running as a standby.
    pub upstream: Option<Upstream>,
    pub primary_slot_name: Option<String>,
    /// The user's `postgresql.parameters`; names keel owns are skipped.
    pub parameters: BTreeMap<String, String>,
    /// `pg_hba.conf`, line by line; empty leaves the file alone.
    pub hba: Vec<String>,
    /// `pg_ident.conf`, line by line; empty leaves the file alone.
    pub ident: Vec<String>,
}

impl ServerConfig {
    /// Patroni's defaults for what keel owns.
    pub fn new(member: &str, port: u16) -> ServerConfig {
        ServerConfig {
            member: member.to_owned(),
            listen_addresses: "*".to_owned(),
            port,
            socket_dir: PathBuf::from("/var/run/postgresql"),
            max_wal_senders: 10,
            max_replication_slots: 10,
            wal_keep_size_mb: 128,
            sync_standby_names: SyncNames::default(),
            upstream: None,
            primary_slot_name: None,
            parameters: BTreeMap::new(),
            hba: Vec::new(),
            ident: Vec::new(),
        }
    }
}

/// The member a standby streams from and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    pub member: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    /// Further libpq keywords (`sslmode`, `connect_timeout`, …).
    pub options: BTreeMap<String, String>,
}

impl Upstream {
    /// A libpq conninfo string naming this node as `application_name`.
    pub fn conninfo(&self, application_name: &str) -> String {
        let mut pairs: Vec<(&str, String)> =
            vec![("host", self.host.clone()), ("port", self.port.to_string()), ("user", self.user.clone())];
        if let Some(password) = &self.password {
            pairs.push(("password", password.clone()));
        }
        pairs.push(("application_name", application_name.to_owned()));
        for (key, value) in &self.options {
            if !matches!(key.as_str(), "host" | "port" | "user" | "password" | "application_name") {
                pairs.push((key, value.clone()));
            }
        }
        let quoted: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={}", conninfo_value(v))).collect();
        quoted.join(" ")
    }
}

/// The first line of keel's `postgresql.conf`, which tells it apart from
/// initdb's.
pub const CONF_HEADER: &str = "# Written by keel: edits are overwritten.";

/// Where [`PgCtl::check_config`] writes the file it checks, in the data
/// directory.
const CHECK_CONF: &str = "postgresql.keel-check.conf";

/// The settings keel writes itself, which `parameters` cannot override.
pub const KEEL_OWNED_SETTINGS: [&str; 15] = [
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "hot_standby",
    "wal_level",
    "wal_log_hints",
    "max_wal_senders",
    "max_replication_slots",
    "wal_keep_size",
    "wal_receiver_status_interval",
    "synchronous_standby_names",
    "primary_conninfo",
    "primary_slot_name",
    "recovery_target_timeline",
    "keel.upstream",
];

impl PgCtl {
    /// The binaries of `bin_dir` that keel runs.
    pub const BINARIES: [&str; 6] =
        ["initdb", "pg_basebackup", "pg_controldata", "pg_ctl", "pg_rewind", "postgres"];

    pub fn new(bin_dir: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> PgCtl {
        PgCtl {
            bin_dir: bin_dir.into(),
            data_dir: data_dir.into(),
            run_as: None,
            command_timeout: Duration::from_secs(10),
            server_log: None,
            setpriv: Some(PathBuf::from("setpriv")),
            child: Arc::default(),
        }
    }

    /// Whether the running postmaster is the one this process started, so
    /// that [`PgCtl::exited`] reports its exit (one started before the
    /// agent is not its child: only polling sees it go).
    pub fn watches_exit(&self) -> bool {
        let child = *self.child.pid.lock().unwrap_or_else(|p| p.into_inner());
        child.is_some_and(|pid| self.postmaster_pid() == Some(i64::from(pid)))
    }

    /// Returns when a postmaster this process started exits; at once if
    /// one exited since the last call returned.
    pub async fn exited(&self) {
        self.child.exited.notified().await;
    }

    /// `initdb -D <data_dir> <options>` (`--encoding=UTF8`,
    /// `--data-checksums`, …).
    pub async fn initdb(&self, options: &[String], timeout: Duration) -> Result<(), PgCtlError> {
        match self.data_dir_state()? {
            DataDirState::Missing | DataDirState::Empty => {}
            other => {
                return Err(PgCtlError::Refused(format!("initdb: data directory is {other:?}, not empty")))
            }
        }
        let mut args = self.dash_d();
        args.extend(options.iter().map(OsString::from));
        self.run("initdb", &args, timeout).await.map(drop)
    }

    /// Writes keel's `postgresql.conf` and, when `config.hba` is not
    /// empty, `pg_hba.conf`. The first time, initdb's `postgresql.conf`
    /// becomes `postgresql.base.conf`, which keel's includes first (as
    /// Patroni does), so initdb's locale and memory settings stay.
    /// pg_basebackup and pg_rewind copy the source's files: write the
    /// config again after either.
    pub fn write_config(&self, config: &ServerConfig) -> Result<(), PgCtlError> {
        let conf = self.data_dir.join("postgresql.conf");
        let base = self.data_dir.join("postgresql.base.conf");
        let current = std::fs::read_to_string(&conf).unwrap_or_default();
        if !base.exists() && !current.is_empty() && !current.starts_with(CONF_HEADER) {
            std::fs::rename(&conf, &base).map_err(|e| io_error(&conf, e))?;
        }
        self.write_owned_file(&conf, &render_postgresql_conf(config, &self.data_dir)?)?;
        for (name, lines) in [("pg_hba.conf", &config.hba), ("pg_ident.conf", &config.ident)] {
            if !lines.is_empty() {
                self.write_owned_file(&self.data_dir.join(name), &render_lines_file(name, lines)?)?;
            }
        }
        Ok(())
    }

    /// Whether Postgres would start with `config`'s `postgresql.conf`:
    /// `postgres -C` reads it as a start does (with `postgresql.base.conf`
    /// and `postgresql.auto.conf`) and refuses a bad value or an unknown
    /// parameter, without touching a running server. It needs an
    /// initialised data directory (its `postgresql.base.conf`, and a
    /// file written into an empty one would stop pg_basebackup). The error
    /// names what Postgres refused.
    pub async fn check_config(&self, config: &ServerConfig) -> Result<(), PgCtlError> {
        let state = self.data_dir_state()?;
        if state != DataDirState::Initialised {
            return Err(PgCtlError::Refused(format!(
                "cannot check settings: the data directory is {state:?}"
            )));
        }
        let conf = render_postgresql_conf(config, &self.data_dir)?;
        for (name, lines) in [("pg_hba.conf", &config.hba), ("pg_ident.conf", &config.ident)] {
            render_lines_file(name, lines)?;
        }
        // In the data directory, so that its includes resolve as the real
        // file's do.
        let candidate = self.data_dir.join(CHECK_CONF);
        self.write_owned_file(&candidate, &conf)?;
        let mut args = self.dash_d();
        args.extend(["-c".into(), format!("config_file={}", candidate.display()).into()]);
        args.extend(["-C", "port"].map(OsString::from));
        let checked = self.run("postgres", &args, self.command_timeout).await;
        let _ = std::fs::remove_file(&candidate);
        match checked {
            Err(PgCtlError::Failed { stderr, .. }) => {
                Err(PgCtlError::Refused(format!("Postgres refuses the settings: {}", refusals(&stderr))))
            }
            other => other.map(drop),
        }
    }

    /// Creates or removes `standby.signal`: the next start is a standby.
    pub fn set_standby(&self, standby: bool) -> Result<(), PgCtlError> {
        let signal = self.data_dir.join("standby.signal");
        match (standby, signal.exists()) {
            (true, false) => self.write_owned_file(&signal, ""),
            (false, true) => std::fs::remove_file(&signal).map_err(|e| io_error(&signal, e)),
            _ => Ok(()),
        }
    }

    /// Starts the postmaster as a child that dies with the agent (module
    /// documentation) and waits until it accepts connections: `ready`, or
    /// `standby` for a hot standby, in `postmaster.pid`, as `pg_ctl start
    /// -w` waits. On timeout the server is left starting (crash recovery
    /// may be long) and `facts` reports it as `Starting`.
    pub async fn start(&self, timeout: Duration) -> Result<(), PgCtlError> {
        if let Some(pid) = self.postmaster_pid() {
            return Err(PgCtlError::Refused(format!("Postgres already runs (pid {pid})")));
        }
        let (cmd, log_offset) = self.postmaster_command()?;
        let (pid, exited) =
            spawn_postmaster(cmd, &self.data_dir, self.setpriv.is_some(), Arc::clone(&self.child)).await?;
        let command = "postgres (start)".to_owned();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = exited.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return Err(PgCtlError::Failed {
                    command,
                    status,
                    stderr: self.server_log_since(log_offset),
                });
            }
            let pidfile = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).unwrap_or_default();
            let lines: Vec<&str> = pidfile.lines().collect();
            let ours = lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == Some(pid);
            if ours && matches!(lines.get(7).map(|s| s.trim()), Some("ready" | "standby")) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let stderr = format!("left starting (pid {pid}); {}", self.server_log_since(log_offset));
                return Err(PgCtlError::Timeout { command, after: timeout, stderr });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `pg_ctl stop -m fast|immediate -w`. Stopping a stopped server is
    /// not an error.
    pub async fn stop(&self, mode: StopMode, timeout: Duration) -> Result<(), PgCtlError> {
        if !self.is_running() {
            return Ok(());
        }
        let mode = match mode {
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        };
        let mut args = self.dash_d();
        args.extend(["stop", "-m", mode, "-w", "-t"].map(OsString::from));
        args.push(whole_seconds(timeout).into());
        match self.run("pg_ctl", &args, timeout + Duration::from_secs(2)).await {
            // It may have stopped on its own between the check and pg_ctl.
            Err(PgCtlError::Failed { .. }) if !self.is_running() => Ok(()),
            result => result.map(drop),
        }
    }

    /// `pg_ctl promote -w`: returns once the server is out of recovery.
    pub async fn promote(&self, timeout: Duration) -> Result<(), PgCtlError> {
        let mut args = self.dash_d();
        args.extend(["promote", "-w", "-t"].map(OsString::from));
        args.push(whole_seconds(timeout).into());
        self.run("pg_ctl", &args, timeout + Duration::from_secs(2)).await.map(drop)
    }

    /// `pg_ctl reload`: the server rereads its configuration files.
    pub async fn reload(&self) -> Result<(), PgCtlError> {
        let mut args = self.dash_d();
        args.push("reload".into());
        self.run("pg_ctl", &args, self.command_timeout).await.map(drop)
    }

    /// `LC_ALL=C pg_controldata`, parsed.
    pub async fn controldata(&self) -> Result<PgControl, PgCtlError> {
        let (output, _) = self.run("pg_controldata", &self.dash_d(), self.command_timeout).await?;
        Ok(parse_controldata(&output)?)
    }

    /// `pg_basebackup -X stream` from `source_conninfo` into the missing or
    /// empty data directory, with a fast checkpoint on the source (a spread
    /// one could take minutes). A failure leaves what was copied: the
    /// directory is then `Incomplete`.
    pub async fn basebackup(&self, source_conninfo: &str, timeout: Duration) -> Result<(), PgCtlError> {
        match self.data_dir_state()? {
            DataDirState::Missing | DataDirState::Empty => {}
            other => {
                return Err(PgCtlError::Refused(format!(
                    "base backup: data directory is {other:?}, not empty"
                )))
            }
        }
        let mut args = self.dash_d();
        args.extend(
            ["-X", "stream", "-c", "fast", "--no-password", "-d", source_conninfo].map(OsString::from),
        );
        self.run("pg_basebackup", &args, timeout).await.map(drop)
    }

    /// `pg_rewind` of the stopped, cleanly shut down data directory onto
    /// `source_conninfo`'s timeline. It copies the source's configuration
    /// files: write the config (and `standby.signal`) again after it.
    ///
    /// pg_rewind reads the source's timeline from its `pg_control`, which
    /// names the new timeline only after the first checkpoint following the
    /// promotion; before it, pg_rewind says "no rewind required" and
    /// succeeds without rewinding. So this first waits (within `timeout`)
    /// until the source has checkpointed on its current timeline.
    pub async fn rewind(&self, source_conninfo: &str, timeout: Duration) -> Result<(), PgCtlError> {
        if let Some(pid) = self.postmaster_pid() {
            return Err(PgCtlError::Refused(format!("pg_rewind: Postgres still runs (pid {pid})")));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let why = match checkpointed_on_current_timeline(source_conninfo, left.min(self.command_timeout))
                .await
            {
                Ok(true) => break,
                Ok(false) => "the source has not checkpointed on its new timeline yet".to_owned(),
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() + Duration::from_millis(200) >= deadline {
                let command = "pg_rewind (waiting for the source)".to_owned();
                return Err(PgCtlError::Timeout { command, after: timeout, stderr: why });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let args: Vec<OsString> = vec![
            "--target-pgdata".into(),
            self.data_dir.clone().into(),
            "--source-server".into(),
            source_conninfo.into(),
        ];
        let (_, stderr) = self.run("pg_rewind", &args, timeout).await?;
        // pg_rewind reports on stderr: where the histories diverged, or
        // "no rewind required".
        tracing::info!(data_dir = %self.data_dir.display(), report = %tail_text(&stderr), "pg_rewind done");
        Ok(())
    }

    /// Brings a data directory that was not shut down cleanly to a clean
    /// shutdown, as pg_rewind needs of its target.
    ///
    /// It runs `postgres --single` with stdin closed: crash recovery, then
    /// a shutdown checkpoint at end of input. Single-user mode listens on no
    /// socket, so no client and no standby can reach a diverged old primary
    /// in the meantime, which a `start` + `stop` would allow, and it needs no
    /// free port. This is what pg_rewind 13+ does itself, and Patroni's
    /// `ensure_clean_shutdown`; like Patroni, `archive_mode=on` with a
    /// failing `archive_command` keeps the recovered WAL from being recycled,
    /// since pg_rewind reads it back to the fork point. Single-user mode
    /// refuses `standby.signal`, so the signal files are set aside and put
    /// back.
    pub async fn recover_crash(&self, timeout: Duration) -> Result<(), PgCtlError> {
        if let Some(pid) = self.postmaster_pid() {
            return Err(PgCtlError::Refused(format!("crash recovery: Postgres still runs (pid {pid})")));
        }
        if self.controldata().await?.state.is_clean() {
            return Ok(());
        }
        let mut hidden = Vec::new();
        for name in ["standby.signal", "recovery.signal"] {
            let path = self.data_dir.join(name);
            if path.exists() {
                std::fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
                hidden.push(path);
            }
        }
        let mut args: Vec<OsString> = vec!["--single".into()];
        args.extend(self.dash_d());
        args.extend(
            ["-c", "archive_mode=on", "-c", "archive_command=false", "template1"].map(OsString::from),
        );
        let result = self.run("postgres", &args, timeout).await;
        for path in &hidden {
            self.write_owned_file(path, "")?;
        }
        result?;
        match self.controldata().await?.state {
            ControlState::ShutDown | ControlState::ShutDownInRecovery => Ok(()),
            state => Err(PgCtlError::Refused(format!("crash recovery ended but pg_control says {state:?}"))),
        }
    }

    /// Whether a postmaster (or a single-user backend) holds the data
    /// directory: its `postmaster.pid` names a live `postgres` process.
    pub fn is_running(&self) -> bool {
        self.postmaster_pid().is_some()
    }

    /// The PID in `postmaster.pid` if that process is alive and is
    /// `postgres` (a stale file after a crash may name a reused PID).
    /// Negative for a single-user backend, as Postgres writes it.
    pub fn postmaster_pid(&self) -> Option<i64> {
        use std::sync::atomic::Ordering;
        let child = *self.child.pid.lock().unwrap_or_else(|p| p.into_inner());
        // Postgres removes postmaster.pid as it shuts down, before its
        // process ends and is reaped: `pg_ctl stop -w` returns in between.
        let confirmed = self.child.confirmed.load(Ordering::Acquire);
        if let Some(pid) = child.filter(|_| confirmed && self.data_dir.join("postmaster.pid").exists()) {
            return Some(i64::from(pid));
        }
        let found = self.postmaster_pid_on_disk();
        if child.is_some_and(|pid| found == Some(i64::from(pid))) {
            self.child.confirmed.store(true, Ordering::Release);
        }
        found
    }

    fn postmaster_pid_on_disk(&self) -> Option<i64> {
        let pidfile = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        let pid: i64 = pidfile.lines().next()?.trim().parse().ok()?;
        // /proc/<pid>/stat: "pid (comm) state ...".
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.unsigned_abs())).ok()?;
        let (comm, rest) = stat.split_once('(').and_then(|(_, r)| r.rsplit_once(')'))?;
        let state = rest.trim_start().chars().next()?;
        let alive = !matches!(state, 'Z' | 'X' | 'x');
        (alive && matches!(comm, "postgres" | "postmaster")).then_some(pid)
    }

    pub fn data_dir_state(&self) -> Result<DataDirState, PgCtlError> {
        let entries = match std::fs::read_dir(&self.data_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DataDirState::Missing),
            Err(e) => return Err(io_error(&self.data_dir, e)),
        };
        let mut empty = true;
        for entry in entries {
            let name = entry.map_err(|e| io_error(&self.data_dir, e))?.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && name != "lost+found" {
                empty = false;
                break;
            }
        }
        if empty {
            return Ok(DataDirState::Empty);
        }
        let initialised =
            self.data_dir.join("PG_VERSION").is_file() && self.data_dir.join("global/pg_control").is_file();
        Ok(if initialised { DataDirState::Initialised } else { DataDirState::Incomplete })
    }

    /// Writes a file in the data directory the way Postgres expects its
    /// own: mode 0600, owned by `run_as`, replaced atomically (write, then
    /// rename).
    pub fn write_owned_file(&self, path: &Path, contents: &str) -> Result<(), PgCtlError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".keel-tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, contents).map_err(|e| io_error(&tmp, e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io_error(&tmp, e))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&tmp, Some(uid), Some(gid)).map_err(|e| io_error(&tmp, e))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    }

    /// `[setpriv --pdeathsig SIGQUIT --] postgres -D <data_dir>` as
    /// `run_as`, in a process group of its own, its output appended to
    /// `server_log`; and where this start's part of the log begins.
    fn postmaster_command(&self) -> Result<(std::process::Command, u64), PgCtlError> {
        let postgres = self.bin_dir.join("postgres");
        let mut cmd = match &self.setpriv {
            Some(setpriv) => {
                let mut cmd = std::process::Command::new(setpriv);
                cmd.args(["--pdeathsig", "SIGQUIT", "--"]).arg(&postgres);
                cmd
            }
            None => std::process::Command::new(&postgres),
        };
        cmd.arg("-D").arg(&self.data_dir).current_dir("/").stdin(Stdio::null()).process_group(0);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let Some(path) = &self.server_log else {
            return Ok((cmd, 0));
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        let offset = log.metadata().map(|m| m.len()).unwrap_or(0);
        let err = log.try_clone().map_err(|e| io_error(path, e))?;
        cmd.stdout(log).stderr(err);
        Ok((cmd, offset))
    }

    fn dash_d(&self) -> Vec<OsString> {
        vec!["-D".into(), self.data_dir.clone().into()]
    }

    /// Runs `<bin_dir>/<program> <args>` as `run_as`, with `LC_ALL=C` and
    /// no stdin, and returns its stdout and stderr; killed at `deadline`. Errors name
    /// the program and subcommand only: arguments may hold a password.
    async fn run(
        &self,
        program: &str,
        args: &[OsString],
        deadline: Duration,
    ) -> Result<(String, String), PgCtlError> {
        let subcommand = args
            .iter()
            .map(|a| a.to_string_lossy())
            .find(|a| matches!(a.as_ref(), "stop" | "promote" | "reload" | "--single"));
        let command = match subcommand {
            Some(sub) => format!("{program} {sub}"),
            None => program.to_owned(),
        };
        let mut cmd = tokio::process::Command::new(self.bin_dir.join(program));
        cmd.args(args)
            .env("LC_ALL", "C")
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        let mut child =
            cmd.spawn().map_err(|e| PgCtlError::Spawn { command: command.clone(), error: e.to_string() })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let finished = tokio::time::timeout(deadline, async {
            let (_, _, status) =
                tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err), child.wait());
            status
        })
        .await;
        let tail = |bytes: &[u8]| tail_text(&String::from_utf8_lossy(bytes));
        match finished {
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Err(PgCtlError::Timeout { command, after: deadline, stderr: tail(&err) })
            }
            Ok(Err(e)) => Err(PgCtlError::Spawn { command, error: e.to_string() }),
            Ok(Ok(status)) if status.success() => {
                Ok((String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned()))
            }
            Ok(Ok(status)) => {
                let stderr = if err.iter().all(u8::is_ascii_whitespace) { tail(&out) } else { tail(&err) };
                Err(PgCtlError::Failed { command, status: status.to_string(), stderr })
            }
        }
    }

    /// What the server logged since `offset`, for a failed start.
    fn server_log_since(&self, offset: u64) -> String {
        let Some(path) = &self.server_log else {
            return "see the agent's stderr for the server log".to_owned();
        };
        let mut text = String::new();
        let read = std::fs::File::open(path)
            .and_then(|mut f| f.seek(SeekFrom::Start(offset)).and_then(|_| f.read_to_string(&mut text)));
        match read {
            Ok(_) => tail_text(&text),
            Err(e) => format!("cannot read {}: {e}", path.display()),
        }
    }
}

/// Forks the postmaster from a thread of its own, which then waits for it
/// (see the module documentation for why), and returns its PID and the
/// slot where that thread leaves its exit status.
async fn spawn_postmaster(
    mut cmd: std::process::Command,
    data_dir: &Path,
    via_setpriv: bool,
    watch: Arc<Child>,
) -> Result<(u32, Arc<Mutex<Option<String>>>), PgCtlError> {
    let spawn_error = |error: String| PgCtlError::Spawn { command: "postgres (start)".to_owned(), error };
    let exited: Arc<Mutex<Option<String>>> = Arc::default();
    let exit_slot = Arc::clone(&exited);
    let (spawned_tx, spawned_rx) = tokio::sync::oneshot::channel();
    let data_dir = data_dir.to_owned();
    std::thread::Builder::new()
        .name("keel-postmaster".into())
        .spawn(move || match cmd.spawn() {
            Err(e) => drop(spawned_tx.send(Err(e))),
            Ok(mut child) => {
                watch.confirmed.store(false, std::sync::atomic::Ordering::Release);
                *watch.pid.lock().unwrap_or_else(|p| p.into_inner()) = Some(child.id());
                let _ = spawned_tx.send(Ok(child.id()));
                let status = match child.wait() {
                    Ok(status) => status.to_string(),
                    Err(e) => format!("unknown exit: {e}"),
                };
                tracing::info!(data_dir = %data_dir.display(), %status, "postmaster exited");
                *exit_slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
                watch.confirmed.store(false, std::sync::atomic::Ordering::Release);
                *watch.pid.lock().unwrap_or_else(|p| p.into_inner()) = None;
                watch.exited.notify_one();
            }
        })
        .map_err(|e| spawn_error(e.to_string()))?;
    match spawned_rx.await {
        Ok(Ok(pid)) => Ok((pid, exited)),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound && via_setpriv => Err(spawn_error(format!(
            "{e} (is util-linux's setpriv installed? keel needs it so that Postgres dies with the agent)"
        ))),
        Ok(Err(e)) => Err(spawn_error(e.to_string())),
        Err(_) => Err(spawn_error("the postmaster thread ended without a word".into())),
    }
}

/// `postgresql.conf` for `config` on `data_dir`. Names are checked; values
/// quoted.
pub fn render_postgresql_conf(config: &ServerConfig, data_dir: &Path) -> Result<String, PgCtlError> {
    let mut out = format!(
        "{CONF_HEADER}\n# Set parameters in keel's configuration (postgresql.parameters) instead.\n\
         include_if_exists 'postgresql.base.conf'\n\n"
    );
    let mut line = |name: &str, value: &str| out.push_str(&format!("{name} = {}\n", conf_value(value)));
    for (name, value) in &config.parameters {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !valid {
            return Err(PgCtlError::Refused(format!("not a Postgres parameter name: {name:?}")));
        }
        if KEEL_OWNED_SETTINGS.iter().any(|owned| owned.eq_ignore_ascii_case(name)) {
            // Said once per start; settings such as wal_log_hints = on,
            // which the guide's config sets and keel sets anyway, are common.
            tracing::debug!(parameter = %name, "ignoring a parameter that keel sets itself");
            continue;
        }
        line(name, value);
    }
    if config.socket_dir.starts_with(data_dir) {
        let why = "unix_socket_directories inside the data directory breaks pg_rewind from this node";
        return Err(PgCtlError::Refused(why.to_owned()));
    }
    let socket_dir = &config.socket_dir;
    let conninfo = config.upstream.as_ref().map(|u| u.conninfo(&config.member)).unwrap_or_default();
    let upstream = config.upstream.as_ref().map(|u| u.member.as_str()).unwrap_or("");
    line("listen_addresses", &config.listen_addresses);
    line("port", &config.port.to_string());
    line("unix_socket_directories", &socket_dir.to_string_lossy());
    line("hot_standby", "on");
    line("wal_level", "replica");
    // pg_rewind needs hint-bit changes in WAL (rule 4's repair path).
    line("wal_log_hints", "on");
    line("max_wal_senders", &config.max_wal_senders.to_string());
    line("max_replication_slots", &config.max_replication_slots.to_string());
    line("wal_keep_size", &format!("{}MB", config.wal_keep_size_mb));
    // Standbys reply every second, so that the primary's reply_time shows
    // a silent sync standby well within ttl/2 (rule 8).
    line("wal_receiver_status_interval", "1s");
    line("synchronous_standby_names", &format_sync_names(&config.sync_standby_names));
    line("primary_conninfo", &conninfo);
    line("primary_slot_name", config.primary_slot_name.as_deref().unwrap_or(""));
    line("recovery_target_timeline", "latest");
    // Which member primary_conninfo points at, read back by the probe as
    // the server runs with it (a custom placeholder setting).
    line("keel.upstream", upstream);
    Ok(out)
}

/// `pg_hba.conf` or `pg_ident.conf` (`name`) holding `lines`.
fn render_lines_file(name: &str, lines: &[String]) -> Result<String, PgCtlError> {
    if let Some(bad) = lines.iter().find(|l| l.contains(['\n', '\r'])) {
        return Err(PgCtlError::Refused(format!("{name} line holds a line break: {bad:?}")));
    }
    Ok(format!("{}\n{}\n", CONF_HEADER, lines.join("\n")))
}

/// What Postgres said against a configuration file, one message after the
/// other without timestamps (`LOG:  invalid value for parameter "work_mem":
/// "banana"`), leaving out the notes about include files that are absent.
fn refusals(stderr: &str) -> String {
    let messages: Vec<&str> = stderr
        .lines()
        .filter_map(|line| {
            let (_, message) = line.split_once("LOG:").or_else(|| line.split_once("FATAL:"))?;
            Some(message.trim())
        })
        .filter(|m| !m.starts_with("skipping missing configuration file") && !m.contains("contains errors"))
        .collect();
    if messages.is_empty() {
        stderr.trim().to_owned()
    } else {
        messages.join("; ")
    }
}

/// A `postgresql.conf` string literal: backslash escapes are processed
/// inside, and a line break must be escaped.
fn conf_value(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('\'', "''").replace('\n', "\\n").replace('\r', "\\r");
    format!("'{escaped}'")
}

/// A libpq conninfo value: bare when it is simple, else single-quoted with
/// backslash escapes.
fn conninfo_value(value: &str) -> String {
    let bare = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:@".contains(c));
    if bare {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

fn whole_seconds(timeout: Duration) -> String {
    timeout.as_secs().max(1).to_string()
}

fn io_error(path: &Path, e: std::io::Error) -> PgCtlError {
    PgCtlError::Io { path: path.to_owned(), error: e.to_string() }
}

/// The last ~2000 characters, trimmed: enough for the error, not the log.
fn tail_text(text: &str) -> String {
    let text = text.trim();
    let start = text.char_indices().rev().nth(2000).map_or(0, |(i, _)| i);
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::sync_names::parse_sync_names;

    fn upstream() -> Upstream {
        Upstream {
            member: "pg1".into(),
            host: "10.0.0.1".into(),
            port: 5432,
            user: "replicator".into(),
            password: Some("it's a \\secret".into()),
            options: BTreeMap::from([("sslmode".into(), "prefer".into()), ("host".into(), "ignored".into())]),
        }
    }

    #[test]
    fn conninfo_names_this_member_and_quotes_what_needs_it() {
        assert_eq!(
            upstream().conninfo("pg-2"),
            "host=10.0.0.1 port=5432 user=replicator password='it\\'s a \\\\secret' application_name=pg-2 sslmode=prefer"
        );
    }

    #[test]
    fn standby_config_carries_every_setting_keel_needs() {
        let mut config = ServerConfig::new("pg-2", 5433);
        config.upstream = Some(upstream());
        config.primary_slot_name = Some("pg_2".into());
        config.sync_standby_names = parse_sync_names("ANY 1 (pg1, pg3)").unwrap();
        config.socket_dir = "/run/pg".into();
        let conf = render_postgresql_conf(&config, Path::new("/var/lib/pg")).unwrap();
        for expected in [
            "include_if_exists 'postgresql.base.conf'\n",
            "listen_addresses = '*'\n",
            "port = '5433'\n",
            "unix_socket_directories = '/run/pg'\n",
            "hot_standby = 'on'\n",
            "wal_level = 'replica'\n",
            "wal_log_hints = 'on'\n",
            "wal_keep_size = '128MB'\n",
            "wal_receiver_status_interval = '1s'\n",
            "synchronous_standby_names = 'ANY 1 (\"pg1\", \"pg3\")'\n",
            "primary_conninfo = 'host=10.0.0.1 port=5432 user=replicator password=''it\\\\''s a \\\\\\\\secret'' application_name=pg-2 sslmode=prefer'\n",
            "primary_slot_name = 'pg_2'\n",
            "recovery_target_timeline = 'latest'\n",
            "keel.upstream = 'pg1'\n",
        ] {
            assert!(conf.contains(expected), "missing {expected:?} in\n{conf}");
        }
        assert!(conf.starts_with(CONF_HEADER));
    }

    #[test]
    fn user_parameters_come_first_and_cannot_override_keels_settings() {
        let mut config = ServerConfig::new("pg1", 5432);
        config.parameters.insert("max_connections".into(), "200".into());
        config.parameters.insert("WAL_LEVEL".into(), "minimal".into());
        config.parameters.insert("log_line_prefix".into(), "%m 'x'\n".into());
        let conf = render_postgresql_conf(&config, Path::new("/d")).unwrap();
        assert!(conf.contains("max_connections = '200'\n"));
        assert!(conf.contains("log_line_prefix = '%m ''x''\\n'\n"));
        assert!(!conf.contains("minimal"));
        assert!(conf.find("max_connections").unwrap() < conf.find("listen_addresses").unwrap());
        assert!(conf.contains("primary_conninfo = ''\n") && conf.contains("keel.upstream = ''\n"));
    }

    #[test]
    fn socket_directory_inside_the_data_directory_is_refused() {
        let mut config = ServerConfig::new("pg1", 5432);
        config.socket_dir = "/var/lib/pg/data".into();
        assert!(render_postgresql_conf(&config, Path::new("/var/lib/pg/data")).is_err());
        config.socket_dir = "/var/lib/pg/data/sockets".into();
        assert!(render_postgresql_conf(&config, Path::new("/var/lib/pg/data")).is_err());
        config.socket_dir = "/var/lib/pg/data-sockets".into();
        assert!(render_postgresql_conf(&config, Path::new("/var/lib/pg/data")).is_ok());
    }

    #[test]
    fn parameter_name_that_could_inject_lines_is_refused() {
        for bad in ["a = 1\nfsync", "", "1abc", "a b", "a'"] {
            let mut config = ServerConfig::new("pg1", 5432);
            config.parameters.insert(bad.into(), "x".into());
            assert!(render_postgresql_conf(&config, Path::new("/d")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refusals_keep_what_postgres_objected_to() {
        let stderr = "2026-12-07 02:06:42.387 GMT [15584] LOG:  skipping missing configuration file \"/d/postgresql.base.conf\"\n\
                      2026-12-07 02:06:42.387 GMT [15584] LOG:  invalid value for parameter \"work_mem\": \"banana\"\n\
                      2026-12-07 02:06:42.387 GMT [15584] FATAL:  configuration file \"/d/x.conf\" contains errors\n";
        assert_eq!(refusals(stderr), "invalid value for parameter \"work_mem\": \"banana\"");
        assert_eq!(
            refusals("postgres: could not access directory\n"),
            "postgres: could not access directory"
        );
    }

    #[test]
    fn error_text_keeps_only_the_tail() {
        let long = format!("{}END", "x".repeat(5000));
        let tail = tail_text(&long);
        assert!(tail.len() <= 2001 && tail.ends_with("END"));
        assert_eq!(tail_text("  é short \n"), "é short");
    }
}
