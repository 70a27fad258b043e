//! Carrying out one keel-core action against etcd and Postgres.
//!
//! Results: `Done`; `Failed` when it definitely did not happen (a compare
//! that did not hold, a command that failed); `Unknown` when etcd did not
//! answer in time (it may have happened, rule 6).

use std::time::Duration;

use keel_core::{Action, ActionResult, DemoteMode, StartAs, StopMode};
use tracing::{info, warn};

use super::setup::upstream;
use super::{bounded, Agent};
use crate::dcs::patroni::Acquired;
use crate::dcs::KvError;
use crate::pg::{probe, PgCtlError};

/// A short name for logs.
pub fn name(action: &Action) -> &'static str {
    match action {
        Action::TakeInitializeKey => "take-initialize-key",
        Action::CancelInitialize => "cancel-initialize",
        Action::Bootstrap => "bootstrap",
        Action::WriteInitializeKey { .. } => "write-initialize-key",
        Action::WriteClusterConfig => "write-cluster-config",
        Action::CloneFrom { .. } => "clone",
        Action::AcquireLease => "acquire-lease",
        Action::RenewLease { .. } => "renew-lease",
        Action::ReleaseLease { .. } => "release-lease",
        Action::Promote => "promote",
        Action::Demote { .. } => "demote",
        Action::StartPostgres { .. } => "start-postgres",
        Action::StopPostgres { .. } => "stop-postgres",
        Action::RestartPostgres => "restart-postgres",
        Action::Follow { .. } => "follow",
        Action::RecoverCrash => "recover-crash",
        Action::Rewind { .. } => "rewind",
        Action::Reinitialize { .. } => "reinitialize",
        Action::PublishMember(_) => "publish-member",
        Action::WriteSyncKey { .. } => "write-sync-key",
        Action::SetSyncStandbyNames(_) => "set-synchronous-standby-names",
        Action::ClearFailoverRequest { .. } => "clear-failover-request",
        Action::WriteHistory { .. } => "write-history",
        Action::WriteFailsafeKey { .. } => "write-failsafe-key",
        Action::CheckFailsafe { .. } => "check-failsafe",
    }
}

fn kv(result: Result<bool, KvError>) -> ActionResult {
    match result {
        Ok(true) => ActionResult::Done,
        Ok(false) | Err(KvError::LeaseNotFound | KvError::Rejected(_)) => ActionResult::Failed,
        Err(KvError::Unavailable(_)) => ActionResult::Unknown,
    }
}

fn pg(result: Result<(), PgCtlError>, what: &str) -> ActionResult {
    match result {
        Ok(()) => ActionResult::Done,
        Err(e) => {
            warn!("{what} failed: {e}");
            ActionResult::Failed
        }
    }
}

impl Agent {
    fn long(&self) -> Duration {
        self.setup.ctl.command_timeout.max(Duration::from_secs(60))
    }

    pub(super) async fn apply(&mut self, action: &Action) -> (ActionResult, Option<u64>) {
        let ttl_ms = self.config().ttl_ms;
        let d = self.deadline();
        let result = match action {
            Action::AcquireLease => {
                return match bounded(d, self.dcs.acquire(ttl_ms)).await {
                    Ok(Acquired::Yes { ttl_ms }) => (ActionResult::Done, Some(ttl_ms)),
                    Ok(Acquired::Taken) => (ActionResult::Failed, None),
                    Err(e) => (kv(Err(e)), None),
                };
            }
            Action::RenewLease { optime_lsn } => {
                let optime = *optime_lsn;
                return match bounded(d, self.dcs.renew(optime)).await {
                    Ok(Some(ttl_ms)) => (ActionResult::Done, Some(ttl_ms)),
                    Ok(None) => (ActionResult::Failed, None),
                    Err(e) => (kv(Err(e)), None),
                };
            }
            Action::ReleaseLease { optime_lsn } => kv(bounded(d, self.dcs.release(*optime_lsn)).await),
            Action::TakeInitializeKey => kv(bounded(d, self.dcs.take_initialize()).await),
            Action::CancelInitialize => kv(bounded(d, self.dcs.cancel_initialize()).await),
            Action::WriteInitializeKey { system_id } => {
                kv(bounded(d, self.dcs.write_initialize(*system_id)).await)
            }
            Action::WriteClusterConfig => {
                let json = serde_json::to_vec(&self.cfg.bootstrap.dcs).unwrap_or_default();
                kv(bounded(d, self.dcs.write_config_if_absent(json)).await)
            }
            Action::PublishMember(status) => {
                kv(bounded(d, self.dcs.publish_member(status, ttl_ms)).await.map(|()| true))
            }
            Action::WriteSyncKey { members, quorum, expected_revision } => {
                kv(bounded(d, self.dcs.write_sync(members, *quorum, *expected_revision)).await)
            }
            Action::ClearFailoverRequest { revision } => {
                kv(bounded(d, self.dcs.clear_failover(*revision)).await)
            }
            Action::WriteHistory { switches } => {
                let known = self.snapshot.as_ref().map(|s| s.history.clone()).unwrap_or_default();
                kv(bounded(d, self.dcs.write_history(switches, &known, super::wall_ms())).await)
            }
            Action::WriteFailsafeKey { members } => {
                let view = self.snapshot.as_ref().map(|s| s.view.clone()).unwrap_or_default();
                kv(bounded(d, self.dcs.write_failsafe(members, &view)).await)
            }
            Action::CheckFailsafe { .. } => {
                // The failsafe pings go over the REST API, which is not
                // built yet: without confirmations the leader demotes at
                // its deadline, which is safe.
                ActionResult::Failed
            }
            _ => self.apply_postgres(action).await,
        };
        (result, None)
    }

    async fn apply_postgres(&mut self, action: &Action) -> ActionResult {
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
            _ => ActionResult::Failed,
        }
    }

    /// Writes postgresql.conf for this role and upstream, and standby.signal.
    fn configure(&mut self, upstream_member: Option<&str>, standby: bool) -> Result<(), PgCtlError> {
        let user = &self.cfg.postgresql.authentication.replication;
        self.setup.server.upstream = upstream_member.and_then(|m| {
            let url = self.snapshot.as_ref()?.view.members.get(m)?.conn_url.clone();
            upstream(m, &url, user)
        });
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
                warn!("creating the replication user failed: {e}");
                return ActionResult::Failed;
            }
        }
        pg(started, "start")
    }

    /// After bootstrap: the replication user, and the superuser's password.
    async fn create_users(&self) -> Result<(), probe::ProbeError> {
        let auth = &self.cfg.postgresql.authentication;
        let client = probe::connect(&self.setup.conn).await?;
        let quote = |s: &str| s.replace('\'', "''");
        let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let mut sql = String::new();
        if let Some(pw) = &auth.superuser.password {
            sql.push_str(&format!(
                "ALTER ROLE {} PASSWORD '{}';",
                ident(&auth.superuser.username),
                quote(pw)
            ));
        }
        let repl = &auth.replication;
        if !repl.username.is_empty() && repl.username != auth.superuser.username {
            let pw =
                repl.password.as_deref().map(|p| format!(" PASSWORD '{}'", quote(p))).unwrap_or_default();
            sql.push_str(&format!("CREATE ROLE {} WITH REPLICATION LOGIN{pw};", ident(&repl.username)));
        }
        if !sql.is_empty() {
            client.batch_execute(&sql).await.map_err(|e| probe::ProbeError::Query(e.to_string()))?;
        }
        info!("created the replication user");
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
        match probe::probe(&self.setup.conn).await {
            Ok(facts) => {
                let me = self.cfg.name.clone();
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
        let Some(url) =
            self.snapshot.as_ref().and_then(|s| s.view.members.get(source)).map(|m| m.conn_url.clone())
        else {
            warn!("cannot clone: no address for {source}");
            return ActionResult::Failed;
        };
        let Some(up) = upstream(source, &url, &self.cfg.postgresql.authentication.replication) else {
            warn!("cannot clone: bad conn_url {url:?} for {source}");
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
        let done = self.setup.ctl.basebackup(&up.conninfo(&self.cfg.name), long).await;
        pg(done.and_then(|()| self.configure(Some(source), true)), "base backup")
    }

    async fn rewind(&mut self, source: &str) -> ActionResult {
        let auth = &self.cfg.postgresql.authentication;
        let user = auth.rewind.clone().unwrap_or_else(|| auth.superuser.clone());
        let Some(url) =
            self.snapshot.as_ref().and_then(|s| s.view.members.get(source)).map(|m| m.conn_url.clone())
        else {
            return ActionResult::Failed;
        };
        let Some(up) = upstream(source, &url, &user) else {
            return ActionResult::Failed;
        };
        let conninfo = format!("{} dbname=postgres", up.conninfo(&self.cfg.name));
        let done = self.setup.ctl.rewind(&conninfo, self.long()).await;
        pg(done.and_then(|()| self.configure(Some(source), true)), "pg_rewind")
    }
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
