//! Carrying out one keel-core action against etcd and Postgres.
//!
//! Results: `Done`; `Failed` when it definitely did not happen (a compare
//! that did not hold, a command that failed); `Unknown` when etcd did not
//! answer in time (it may have happened, rule 6).

use keel_core::{Action, ActionResult};
#[cfg(feature = "io")]
use tracing::warn;

use super::{bounded, Agent, Engine, Postgres};
use crate::dcs::patroni::Acquired;
use crate::dcs::{Kv, KvError};
#[cfg(feature = "io")]
use crate::pg::PgCtlError;

/// A short name for logs.
pub fn name(action: &Action) -> &'static str {
    match action {
        Action::TakeInitializeKey => "take-initialize-key",
        Action::CancelInitialize { .. } => "cancel-initialize",
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

#[cfg(feature = "io")]
pub(super) fn pg(result: Result<(), PgCtlError>, what: &str) -> ActionResult {
    match result {
        Ok(()) => ActionResult::Done,
        Err(e) => {
            warn!("{what} failed: {e}");
            ActionResult::Failed
        }
    }
}

impl<K: Kv, P: Postgres, E: Engine> Agent<K, P, E> {
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
            Action::CancelInitialize { revision } => {
                kv(bounded(d, self.dcs.cancel_initialize(*revision)).await)
            }
            Action::WriteInitializeKey { system_id } => {
                kv(bounded(d, self.dcs.write_initialize(*system_id)).await)
            }
            Action::WriteClusterConfig => {
                let json = self.cfg.bootstrap.config_key_json();
                kv(bounded(d, self.dcs.write_config_if_absent(json)).await)
            }
            Action::PublishMember(status) => {
                let extras = &self.extras;
                kv(bounded(d, self.dcs.publish_member_with(status, extras, ttl_ms)).await.map(|()| true))
            }
            Action::WriteSyncKey { members, quorum, expected_revision } => {
                kv(bounded(d, self.dcs.write_sync(members, *quorum, *expected_revision)).await)
            }
            Action::ClearFailoverRequest { revision } => {
                kv(bounded(d, self.dcs.clear_failover(*revision)).await)
            }
            Action::WriteHistory { switches } => {
                let known = self.snapshot.as_ref().map(|s| s.history.clone()).unwrap_or_default();
                kv(bounded(d, self.dcs.write_history(switches, &known, self.clock.wall_ms())).await)
            }
            Action::WriteFailsafeKey { members } => {
                let view = self.snapshot.as_ref().map(|s| s.view.clone()).unwrap_or_default();
                kv(bounded(d, self.dcs.write_failsafe(members, &view)).await)
            }
            #[cfg(feature = "io")]
            Action::CheckFailsafe { members } => self.check_failsafe(members).await,
            // Without the REST client (keel-sim) no member can be asked:
            // unconfirmed, the leader demotes at its deadline, which is safe.
            #[cfg(not(feature = "io"))]
            Action::CheckFailsafe { .. } => ActionResult::Failed,
            // Postgres carries these out (`LocalPostgres::apply_action`,
            // keel-sim's model).
            Action::Bootstrap
            | Action::CloneFrom { .. }
            | Action::Promote
            | Action::Demote { .. }
            | Action::StartPostgres { .. }
            | Action::StopPostgres { .. }
            | Action::RestartPostgres
            | Action::Follow { .. }
            | Action::RecoverCrash
            | Action::Rewind { .. }
            | Action::Reinitialize { .. }
            | Action::SetSyncStandbyNames(_) => {
                let view = self.snapshot.as_ref().map(|s| &s.view);
                self.pg.apply(action, view).await
            }
        };
        (result, None)
    }
}
