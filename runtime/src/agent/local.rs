//! The local PostgreSQL as the agent drives it: [`LocalPostgres`] carries
//! out keel-core's Postgres actions with the server binaries and observes
//! the server, behind the agent's [`Postgres`] trait (the simulator puts a
//! model of Postgres behind the same trait).

use std::time::{Duration, Instant};

use keel_core::{Action, ActionResult, ClusterView, DemoteMode, PgFacts, StartAs, StopMode};
use tracing::{error, info, warn};

use super::exec::pg;
use super::setup::{upstream, Setup};
use super::{slots, Postgres, ServerInfo};
use crate::config::{DynamicPostgresql, PgAuthentication, PgUser};
use crate::pg::probe::{error_text, ProbeError};
use crate::pg::{probe, DataDirState, Observer, PgCtlError, ServerConfig, Upstream};

pub struct LocalPostgres {
    setup: Setup,
    auth: PgAuthentication,
    name: String,
    /// The members' addresses, from the last DCS read.
    view: Option<ClusterView>,
    /// initdb ran in this process: the first start as primary creates the
    /// replication user and sets passwords.
    bootstrapped: bool,
    /// The last `server_info` answer, for which postmaster, and when.
    info: Option<(i64, Instant, ServerInfo)>,
    /// Reads the facts, on a connection kept across loops.
    observer: Observer,
    /// The members whose slots were last found or created, on which
    /// postmaster, and when.
    slots_kept: Option<(i64, Instant, Vec<String>)>,
    /// The dynamic `postgresql` section last applied or refused: the
    /// settings are looked at again only when it changes.
    dynamic_seen: Option<DynamicPostgresql>,
}

/// What became of a dynamic configuration.
enum Applied {
    /// In the files, and in force as far as a reload goes.
    Done,
    /// Postgres would not take it: the last good settings stay until the
    /// configuration changes again.
    Refused(String),
    /// Something failed on the way (a write, the reload): tried again in
    /// the next loop.
    Failed(String),
}

/// How long a `server_info` answer is reused for the same postmaster: the
/// version changes only with a restart, `pending_restart` with a reload.
const SERVER_INFO_MAX_AGE: Duration = Duration::from_secs(10);

/// How long the slots found for the same members on the same postmaster
/// are trusted before they are looked at again (a slot dropped by hand is
/// created again within this); as Patroni, keel otherwise looks at them
/// only when something changed, not every loop.
const SLOTS_MAX_AGE: Duration = Duration::from_secs(60);

impl LocalPostgres {
    pub fn new(setup: Setup, name: &str, auth: PgAuthentication) -> LocalPostgres {
        let observer = Observer::new(setup.conn.clone());
        LocalPostgres {
            setup,
            auth,
            name: name.to_owned(),
            view: None,
            bootstrapped: false,
            info: None,
            observer,
            slots_kept: None,
            dynamic_seen: None,
        }
    }

    /// Asks the running server, at most every [`SERVER_INFO_MAX_AGE`] per
    /// postmaster; `None` when it is not running or does not answer.
    async fn query_server_info(&mut self) -> Option<ServerInfo> {
        let Some(pid) = self.setup.ctl.postmaster_pid() else {
            self.info = None;
            return None;
        };
        if let Some((at_pid, at, info)) = &self.info {
            if *at_pid == pid && at.elapsed() < SERVER_INFO_MAX_AGE {
                return Some(info.clone());
            }
        }
        let info = self.observer.session().with(pid, server_info_on).await.ok()?;
        self.info = Some((pid, Instant::now(), info.clone()));
        Some(info)
    }

    fn long(&self) -> Duration {
        self.setup.ctl.command_timeout.max(Duration::from_secs(60))
    }
}

impl Postgres for LocalPostgres {
    async fn facts(&mut self) -> PgFacts {
        self.observer.facts(&self.setup.ctl).await
    }

    fn running_only(&self) -> PgFacts {
        crate::pg::running_only(&self.setup.ctl)
    }

    fn is_running(&self) -> bool {
        self.setup.ctl.is_running()
    }

    fn watches_exit(&self) -> bool {
        self.setup.ctl.watches_exit()
    }

    async fn exited(&self) {
        self.setup.ctl.exited().await;
    }

    async fn server_info(&mut self) -> Option<ServerInfo> {
        self.query_server_info().await
    }

    async fn apply(&mut self, action: &Action, view: Option<&ClusterView>) -> ActionResult {
        if let Some(view) = view {
            self.view = Some(view.clone());
        }
        self.apply_action(action).await
    }

    async fn apply_dynamic(&mut self, postgresql: &DynamicPostgresql) {
        if self.dynamic_seen.as_ref() == Some(postgresql) {
            return;
        }
        let mut wanted = self.setup.server.clone();
        self.setup.local.merge(postgresql).apply_to(&mut wanted);
        if wanted == self.setup.server {
            self.dynamic_seen = Some(postgresql.clone());
            return;
        }
        // Checked against the data directory once there is one; until
        // then nothing runs with them, and a clone's first start keeps
        // the settings the agent started with.
        if !matches!(self.setup.ctl.data_dir_state(), Ok(DataDirState::Initialised)) {
            return;
        }
        let changed = changed_settings(&self.setup.server, &wanted);
        match self.write_checked(&wanted).await {
            Applied::Done => {
                info!(?changed, "applied the dynamic configuration");
                self.setup.server = wanted;
                // pending_restart is read again.
                self.info = None;
                self.dynamic_seen = Some(postgresql.clone());
            }
            Applied::Refused(why) => {
                error!(
                    ?changed,
                    "dynamic configuration not applied, the last good settings stay in force: {why}"
                );
                self.dynamic_seen = Some(postgresql.clone());
            }
            Applied::Failed(why) => warn!(?changed, "applying the dynamic configuration failed: {why}"),
        }
    }

    async fn keep_slots(&mut self, view: &ClusterView) {
        if !self.setup.use_slots {
            return;
        }
        let Some(pid) = self.setup.ctl.postmaster_pid() else { return };
        if let Some((at_pid, at, kept)) = &self.slots_kept {
            if *at_pid == pid && kept.iter().eq(view.members.keys()) && at.elapsed() < SLOTS_MAX_AGE {
                return;
            }
        }
        let (members, me) = (view.members.keys(), self.name.as_str());
        let ensured =
            self.observer.session().with(pid, async |client| slots::ensure(client, members, me).await).await;
        match ensured {
            Ok(created) => {
                if !created.is_empty() {
                    info!(?created, "created replication slots");
                }
                self.slots_kept = Some((pid, Instant::now(), view.members.keys().cloned().collect()));
            }
            Err(e) => {
                self.slots_kept = None;
                warn!("replication slots: {e}");
            }
        }
    }
}

impl LocalPostgres {
    async fn apply_action(&mut self, action: &Action) -> ActionResult {
        let long = self.long();
        match action {
            Action::Bootstrap => {
                let result = self.setup.ctl.initdb(&self.setup.initdb, long).await;
                self.bootstrapped = result.is_ok();
                pg(result.and_then(|()| self.configure(None, false)), "initdb")
            }
            Action::StartPostgres { role } => self.start(role).await,
            Action::StopPostgres { mode } => pg(self.setup.ctl.stop(*mode, long).await, "stop"),
            Action::RestartPostgres => {
                let standby = self.setup.ctl.data_dir.join("standby.signal").exists();
                let stopped = self.setup.ctl.stop(StopMode::Fast, long).await;
                pg(
                    async {
                        stopped?;
                        self.setup.ctl.start(long).await
                    }
                    .await,
                    if standby { "restart replica" } else { "restart" },
                )
            }
            Action::Promote => self.promote().await,
            Action::Demote { mode } => self.demote(*mode).await,
            Action::Follow { upstream } => {
                let configured = self.configure(upstream.as_deref(), true);
                pg(
                    async {
                        configured?;
                        self.setup.ctl.reload().await
                    }
                    .await,
                    "follow",
                )
            }
            Action::RecoverCrash => pg(self.setup.ctl.recover_crash(long).await, "crash recovery"),
            Action::CloneFrom { source } | Action::Reinitialize { source } => self.clone_from(source).await,
            Action::Rewind { source } => self.rewind(source).await,
            Action::SetSyncStandbyNames(names) => {
                self.setup.server.sync_standby_names = names.clone();
                let written = self.setup.ctl.write_config(&self.setup.server);
                pg(
                    async {
                        written?;
                        self.setup.ctl.reload().await
                    }
                    .await,
                    "set synchronous_standby_names",
                )
            }
            // The agent carries these out against etcd and the REST API
            // (`Agent::apply` in exec.rs); one reaching Postgres is a bug.
            Action::TakeInitializeKey
            | Action::CancelInitialize { .. }
            | Action::WriteInitializeKey { .. }
            | Action::WriteClusterConfig
            | Action::AcquireLease
            | Action::RenewLease { .. }
            | Action::ReleaseLease { .. }
            | Action::PublishMember(_)
            | Action::WriteSyncKey { .. }
            | Action::ClearFailoverRequest { .. }
            | Action::WriteHistory { .. }
            | Action::WriteFailsafeKey { .. }
            | Action::CheckFailsafe { .. } => {
                error!(?action, "not a Postgres action: refused");
                ActionResult::Failed
            }
        }
    }

    /// Writes `wanted` if Postgres takes it, and reloads a running server.
    /// postgresql.conf is checked before it is written; pg_hba.conf and
    /// pg_ident.conf only a running server can check (their views read
    /// the files), so they are checked once written, and the last good
    /// files are written back if Postgres finds an error in them.
    async fn write_checked(&mut self, wanted: &ServerConfig) -> Applied {
        let ctl = &self.setup.ctl;
        match ctl.check_config(wanted).await {
            Ok(()) => {}
            Err(PgCtlError::Refused(why)) => return Applied::Refused(why),
            Err(e) => return Applied::Failed(e.to_string()),
        }
        if let Err(e) = ctl.write_config(wanted) {
            return Applied::Failed(e.to_string());
        }
        let Some(pid) = ctl.postmaster_pid() else { return Applied::Done };
        let files_changed = wanted.hba != self.setup.server.hba || wanted.ident != self.setup.server.ident;
        if files_changed {
            let errors = self.observer.session().with(pid, file_errors).await;
            let why = match errors {
                Ok(errors) if errors.is_empty() => None,
                Ok(errors) => Some(Applied::Refused(errors.join("; "))),
                Err(e) => Some(Applied::Failed(format!("checking pg_hba.conf and pg_ident.conf: {e}"))),
            };
            if let Some(why) = why {
                if let Err(e) = self.setup.ctl.write_config(&self.setup.server) {
                    warn!("writing back the last good configuration failed: {e}");
                }
                return why;
            }
        }
        match self.setup.ctl.reload().await {
            Ok(()) => Applied::Done,
            Err(e) => Applied::Failed(e.to_string()),
        }
    }

    /// Writes postgresql.conf for this role and upstream, and standby.signal.
    /// How to reach `member` as `user`, from its published `conn_url`;
    /// logged when it cannot be known.
    fn reach(&self, member: &str, user: &PgUser) -> Option<Upstream> {
        let Some(url) = self.view.as_ref().and_then(|v| v.members.get(member)).map(|m| m.conn_url.as_str())
        else {
            warn!("no address known for {member}");
            return None;
        };
        let up = upstream(member, url, user);
        if up.is_none() {
            warn!("bad conn_url {url:?} for {member}");
        }
        up
    }

    fn configure(&mut self, upstream_member: Option<&str>, standby: bool) -> Result<(), PgCtlError> {
        self.setup.server.upstream = upstream_member.and_then(|m| self.reach(m, &self.auth.replication));
        if standby {
            // A replica waits for nobody: names kept from a term as primary
            // would hold its first commits once promoted (keel-core sets
            // this cluster's standbys before it promotes).
            self.setup.server.sync_standby_names = Default::default();
        }
        self.setup.ctl.write_config(&self.setup.server)?;
        self.setup.ctl.set_standby(standby)
    }

    async fn start(&mut self, role: &StartAs) -> ActionResult {
        let (upstream_member, standby) = match role {
            StartAs::Primary => (None, false),
            StartAs::Replica { upstream } => (upstream.clone(), true),
        };
        if let Err(e) = self.configure(upstream_member.as_deref(), standby) {
            return pg(Err(e), "configure");
        }
        let started = self.setup.ctl.start(self.long()).await;
        if started.is_ok() && !standby && self.bootstrapped {
            self.bootstrapped = false;
            if let Err(e) = self.create_users().await {
                warn!("creating the users failed: {e}");
                return ActionResult::Failed;
            }
        }
        match started {
            // Left starting (crash recovery can be long): not a failure. The
            // engine releases the lock at once after a start that failed,
            // but waits `primary_start_timeout` for a slow one (Patroni).
            Err(e @ PgCtlError::Timeout { .. }) => {
                warn!("start still running: {e}");
                ActionResult::Unknown
            }
            started => pg(started, "start"),
        }
    }

    /// After bootstrap: the superuser's password, the replication user,
    /// and the rewind user (Patroni's `post_bootstrap`).
    async fn create_users(&self) -> Result<(), probe::ProbeError> {
        let client = probe::connect(&self.setup.conn).await?;
        let sql = users_sql(&self.auth);
        client.batch_execute(&sql).await.map_err(|e| probe::ProbeError::Query(e.to_string()))?;
        info!("set the superuser's password and created the replication and rewind users");
        Ok(())
    }

    async fn promote(&mut self) -> ActionResult {
        if let Err(e) = self.setup.ctl.promote(self.long()).await {
            return pg(Err(e), "promote");
        }
        self.setup.ctl.set_standby(false).ok();
        // A checkpoint right away: pg_rewind of the old primary needs the
        // new timeline in the control file (Patroni does the same).
        if let Err(e) = probe::checkpoint(&self.setup.conn).await {
            warn!("checkpoint after promote failed: {e}");
        }
        let probed = match self.setup.ctl.postmaster_pid() {
            Some(pid) => self.observer.session().probe(pid).await,
            None => Err(probe::ProbeError::Connect("the postmaster is gone".into())),
        };
        match probed {
            Ok(facts) => {
                let me = self.name.clone();
                if let Err(e) = crate::pg::write_timeline_origin(&self.setup.ctl, facts.timeline, &me) {
                    warn!("could not record the timeline origin: {e}");
                }
            }
            Err(e) => warn!("probe after promote failed: {e}"),
        }
        ActionResult::Done
    }

    async fn demote(&mut self, mode: DemoteMode) -> ActionResult {
        let long = self.long();
        let stop_mode = match mode {
            DemoteMode::Immediate => StopMode::Immediate,
            DemoteMode::Graceful | DemoteMode::Offline => {
                if let Err(e) = probe::checkpoint(&self.setup.conn).await {
                    warn!("checkpoint before demote failed: {e}");
                }
                StopMode::Fast
            }
        };
        if let Err(e) = self.setup.ctl.stop(stop_mode, long).await {
            // Writes must stop now: fall back to an immediate stop.
            warn!("stop failed ({e}); stopping immediately");
            if let Err(e) = self.setup.ctl.stop(StopMode::Immediate, long).await {
                return pg(Err(e), "demote");
            }
        }
        if mode == DemoteMode::Offline {
            return ActionResult::Done;
        }
        let restarted = self.configure(None, true);
        pg(
            async {
                restarted?;
                self.setup.ctl.start(long).await
            }
            .await,
            "restart as replica",
        )
    }

    async fn clone_from(&mut self, source: &str) -> ActionResult {
        let Some(up) = self.reach(source, &self.auth.replication) else {
            return ActionResult::Failed;
        };
        let long = self.long();
        if self.setup.ctl.is_running() {
            let _ = self.setup.ctl.stop(StopMode::Immediate, long).await;
        }
        if let Err(e) = clear_dir(&self.setup.ctl.data_dir) {
            warn!("cannot empty the data directory: {e}");
            return ActionResult::Failed;
        }
        // Not the member's name: the base backup's WAL stream shows in the
        // source's pg_stat_replication, and must not pass for the member's
        // standby (it was once chosen as the synchronous standby).
        let done =
            self.setup.ctl.basebackup(&up.conninfo(&format!("keel_basebackup_{}", self.name)), long).await;
        pg(done.and_then(|()| self.configure(Some(source), true)), "base backup")
    }

    async fn rewind(&mut self, source: &str) -> ActionResult {
        let user = self.auth.rewind.as_ref().unwrap_or(&self.auth.superuser);
        let Some(up) = self.reach(source, user) else {
            return ActionResult::Failed;
        };
        let conninfo = format!("{} dbname=postgres", up.conninfo(&format!("keel_rewind_{}", self.name)));
        let done = self.setup.ctl.rewind(&conninfo, self.long()).await;
        pg(done.and_then(|()| self.configure(Some(source), true)), "pg_rewind")
    }
}

/// What bootstrap runs as the superuser, in one batch: the superuser's
/// password; the replication user; and, when `authentication.rewind` names
/// a user other than the superuser, that user with the grants pg_rewind
/// needs to read the source's files (Patroni's `post_bootstrap`; without
/// it every rewind fails with `role "…" does not exist` and the node is
/// cloned again from scratch). Passwords are given in clear: the server
/// stores them as `password_encryption` says (scram-sha-256 by default).
/// Nothing of it reaches the server log, where a password would stay, nor
/// waits for a synchronous standby, which a cluster just bootstrapped does
/// not have yet.
fn users_sql(auth: &PgAuthentication) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let password = |user: &PgUser| user.password.as_deref().map(|p| format!(" PASSWORD {}", quote(p)));
    let mut sql = String::from(
        "SET log_statement TO none; SET log_min_duration_statement TO -1; \
         SET log_min_error_statement TO panic; SET synchronous_commit TO local;",
    );
    let superuser = &auth.superuser;
    if let Some(password) = password(superuser) {
        sql.push_str(&format!("ALTER ROLE {} WITH{password};", ident(&superuser.username)));
    }
    let replication = &auth.replication;
    let own_replication_user = !replication.username.is_empty() && replication.username != superuser.username;
    if own_replication_user {
        let password = password(replication).unwrap_or_default();
        sql.push_str(&format!(
            "CREATE ROLE {} WITH REPLICATION LOGIN{password};",
            ident(&replication.username)
        ));
    }
    let rewind = auth.rewind.as_ref().filter(|r| r.username != superuser.username);
    if let Some(rewind) = rewind {
        let name = ident(&rewind.username);
        // A replication user that also rewinds is created above, with its
        // own password; it only needs the grants.
        if !(own_replication_user && rewind.username == replication.username) {
            let password = password(rewind).unwrap_or_default();
            sql.push_str(&format!("CREATE ROLE {name} WITH LOGIN{password};"));
        }
        for function in [
            "pg_ls_dir(text, boolean, boolean)",
            "pg_stat_file(text, boolean)",
            "pg_read_binary_file(text)",
            "pg_read_binary_file(text, bigint, bigint, boolean)",
        ] {
            sql.push_str(&format!("GRANT EXECUTE ON FUNCTION pg_catalog.{function} TO {name};"));
        }
    }
    sql
}

/// Empties a data directory (a failed or diverged copy) without removing
/// the directory itself, whose owner the operator chose; Postgres wants it
/// private. A missing one is left to pg_basebackup, which creates it so.
fn clear_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The names of the parameters, and the files, that differ between
/// `old` and `new`, for the log.
fn changed_settings(old: &ServerConfig, new: &ServerConfig) -> Vec<String> {
    let names = old.parameters.keys().chain(new.parameters.keys()).collect::<std::collections::BTreeSet<_>>();
    let mut changed: Vec<String> =
        names.into_iter().filter(|n| old.parameters.get(*n) != new.parameters.get(*n)).cloned().collect();
    if old.hba != new.hba {
        changed.push("pg_hba.conf".into());
    }
    if old.ident != new.ident {
        changed.push("pg_ident.conf".into());
    }
    changed
}

/// What Postgres finds wrong in pg_hba.conf and pg_ident.conf as they are
/// on disk now (the views read the files), as `pg_hba.conf line 3: …`.
/// (`pg_ident_file_mappings` is there from PostgreSQL 15 on.)
async fn file_errors(client: &tokio_postgres::Client) -> Result<Vec<String>, ProbeError> {
    let sql = "SELECT 'pg_hba.conf line ' || line_number || ': ' || error FROM pg_hba_file_rules \
               WHERE error IS NOT NULL \
               UNION ALL SELECT 'pg_ident.conf line ' || line_number || ': ' || error \
               FROM pg_ident_file_mappings WHERE error IS NOT NULL";
    let hba_only = "SELECT 'pg_hba.conf line ' || line_number || ': ' || error FROM pg_hba_file_rules \
                    WHERE error IS NOT NULL";
    let version = client
        .simple_query("SHOW server_version_num")
        .await
        .map_err(|e| ProbeError::Query(error_text(&e)))?;
    let version_num = version.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).and_then(|v| v.parse::<u32>().ok()),
        _ => None,
    });
    let sql = if version_num.is_some_and(|v| v >= 150_000) { sql } else { hba_only };
    let messages = client.simple_query(sql).await.map_err(|e| ProbeError::Query(error_text(&e)))?;
    Ok(messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect())
}

/// The server's version and whether (and why) settings wait for a restart.
async fn server_info_on(client: &tokio_postgres::Client) -> Result<ServerInfo, ProbeError> {
    let sql = "SELECT current_setting('server_version_num') AS version, \
               EXISTS (SELECT 1 FROM pg_settings WHERE pending_restart) AS pending";
    let messages = client.simple_query(sql).await.map_err(|e| ProbeError::Query(error_text(&e)))?;
    let row = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .ok_or_else(|| ProbeError::Unexpected("no row for the server's version".into()))?;
    let version = row.get("version").unwrap_or_default();
    let mut info = ServerInfo {
        version_num: version
            .parse()
            .map_err(|_| ProbeError::Unexpected(format!("server_version_num {version:?}")))?,
        pending_restart: row.get("pending") == Some("t"),
        pending_restart_reason: serde_json::Map::new(),
    };
    if info.pending_restart {
        // pg_file_settings needs superuser or pg_read_all_settings:
        // without it, the reason stays unknown.
        let sql = "SELECT s.name, current_setting(s.name) AS old, \
                   (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name \
                    ORDER BY f.seqno DESC LIMIT 1) AS new \
                   FROM pg_settings s WHERE s.pending_restart ORDER BY s.name";
        match client.simple_query(sql).await {
            Ok(messages) => {
                for message in &messages {
                    if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
                        let Some(name) = row.get("name") else { continue };
                        let diff = serde_json::json!({
                            "old_value": row.get("old").unwrap_or(""),
                            "new_value": row.get("new").unwrap_or(""),
                        });
                        info.pending_restart_reason.insert(name.to_owned(), diff);
                    }
                }
            }
            Err(e) => warn!("which settings wait for a restart: {}", error_text(&e)),
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, password: Option<&str>) -> PgUser {
        PgUser { username: name.into(), password: password.map(str::to_owned), ..PgUser::default() }
    }

    const QUIET: &str = "SET log_statement TO none; SET log_min_duration_statement TO -1; \
                         SET log_min_error_statement TO panic; SET synchronous_commit TO local;";

    const REWIND_GRANTS: [&str; 4] = [
        "pg_ls_dir(text, boolean, boolean)",
        "pg_stat_file(text, boolean)",
        "pg_read_binary_file(text)",
        "pg_read_binary_file(text, bigint, bigint, boolean)",
    ];

    fn grants(to: &str) -> String {
        REWIND_GRANTS.map(|f| format!("GRANT EXECUTE ON FUNCTION pg_catalog.{f} TO {to};")).concat()
    }

    #[test]
    fn bootstrap_creates_the_rewind_user_with_the_grants_pg_rewind_needs() {
        let auth = PgAuthentication {
            superuser: user("postgres", Some("su'pw")),
            replication: user("replicator", Some("repl")),
            rewind: Some(user("rewind_user", Some("rw"))),
        };
        let expected = format!(
            "{QUIET}ALTER ROLE \"postgres\" WITH PASSWORD 'su''pw';\
             CREATE ROLE \"replicator\" WITH REPLICATION LOGIN PASSWORD 'repl';\
             CREATE ROLE \"rewind_user\" WITH LOGIN PASSWORD 'rw';{}",
            grants("\"rewind_user\"")
        );
        assert_eq!(users_sql(&auth), expected);
    }

    #[test]
    fn a_rewind_user_that_is_the_superuser_or_absent_creates_nothing_more() {
        let mut auth = PgAuthentication {
            superuser: user("postgres", None),
            replication: user("replicator", None),
            rewind: Some(user("postgres", Some("other"))),
        };
        let expected = format!("{QUIET}CREATE ROLE \"replicator\" WITH REPLICATION LOGIN;");
        assert_eq!(users_sql(&auth), expected);
        auth.rewind = None;
        assert_eq!(users_sql(&auth), expected);
    }

    #[test]
    fn a_rewind_user_that_is_the_replication_user_only_gets_the_grants() {
        let auth = PgAuthentication {
            superuser: user("postgres", None),
            replication: user("repl\"user", Some("pw")),
            rewind: Some(user("repl\"user", Some("pw"))),
        };
        let expected = format!(
            "{QUIET}CREATE ROLE \"repl\"\"user\" WITH REPLICATION LOGIN PASSWORD 'pw';{}",
            grants("\"repl\"\"user\"")
        );
        assert_eq!(users_sql(&auth), expected);
    }
}
