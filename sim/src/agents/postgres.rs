//! keel-runtime's `Postgres` trait on the Postgres model of `pg_model`:
//! the agent's actions change the node's model in the shared world, and its
//! facts come from it. Base backups and rewinds copy from a peer only
//! while the two nodes can reach each other, and take time.

use std::time::Duration;

use keel_core::{Action, ActionResult, ClusterView, DemoteMode, PgFacts, StartAs, StopMode};
use keel_runtime::agent::Postgres;

use super::world::{lock, Shared};

pub struct SimPostgres {
    node: usize,
    world: Shared,
    last_reason: String,
}

/// How long copying a data directory takes.
const BASE_BACKUP: Duration = Duration::from_secs(3);
const REWIND: Duration = Duration::from_millis(500);

impl SimPostgres {
    pub fn new(node: usize, world: Shared) -> SimPostgres {
        SimPostgres { node, world, last_reason: String::new() }
    }

    /// Copies the data directory of `source` once the copy's time has
    /// passed, if it is still reachable and running then.
    async fn copy_from(&self, source: &str, took: Duration, rewind: bool) -> ActionResult {
        tokio::time::sleep(took).await;
        let mut w = lock(&self.world);
        let i = self.node;
        let Some(s) = w.index(source).filter(|s| w.pg[*s].is_running() && w.connected(i, *s)) else {
            return ActionResult::Failed;
        };
        if rewind && !(w.pg[i].clean && w.cfg.use_pg_rewind) {
            return ActionResult::Failed;
        }
        let copy = w.pg[s].clone();
        if rewind {
            if let Err(why) = w.pg[i].rewind_from(&copy) {
                w.out.rewinds_failed += 1;
                w.rewind_failed[i] = true;
                let text = format!("{} rewind from {source} failed: {why:?}", w.names[i]);
                w.event(&text);
                return ActionResult::Failed;
            }
        } else {
            w.pg[i].copy_from(&copy);
            if std::mem::take(&mut w.rewind_failed[i]) {
                w.out.reinitialized_after_failed_rewind += 1;
            }
        }
        let what = if rewind { "rewind" } else { "base backup" };
        let text = format!("{} {what} from {source}", w.names[i]);
        w.event(&text);
        ActionResult::Done
    }
}

impl Postgres for SimPostgres {
    async fn facts(&mut self) -> PgFacts {
        let w = lock(&self.world);
        if w.verbose {
            // The agent's last decision, as it logs it, when it changed
            // (printed here: a task of its own would change the schedule).
            if let Some(status) = &w.status[self.node] {
                let reason =
                    status.read().unwrap_or_else(std::sync::PoisonError::into_inner).last_reason.clone();
                if reason != self.last_reason {
                    println!("{:>9.3} {}: {reason}", w.now_ms() as f64 / 1000.0, w.names[self.node]);
                    self.last_reason = reason;
                }
            }
        }
        w.pg[self.node].facts(w.pg_stat_replication(self.node))
    }

    fn running_only(&self) -> PgFacts {
        let w = lock(&self.world);
        w.pg[self.node].facts(Vec::new())
    }

    fn is_running(&self) -> bool {
        lock(&self.world).pg[self.node].is_running()
    }

    async fn apply(&mut self, action: &Action, _view: Option<&ClusterView>) -> ActionResult {
        let done = |ok: bool| if ok { ActionResult::Done } else { ActionResult::Failed };
        match action {
            Action::CloneFrom { source } | Action::Reinitialize { source } => {
                return self.copy_from(source, BASE_BACKUP, false).await;
            }
            Action::Rewind { source } => return self.copy_from(source, REWIND, true).await,
            // Below, under the world's lock.
            Action::Bootstrap
            | Action::Promote
            | Action::Demote { .. }
            | Action::StartPostgres { .. }
            | Action::StopPostgres { .. }
            | Action::RestartPostgres
            | Action::Follow { .. }
            | Action::RecoverCrash
            | Action::SetSyncStandbyNames(_) => {}
            // The agent carries these out against etcd (exec.rs).
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
            | Action::CheckFailsafe { .. } => {}
        }
        let mut w = lock(&self.world);
        let i = self.node;
        let name = w.names[i].clone();
        let result = match action {
            Action::Bootstrap => {
                let sysid = 7_000_000_000 + madsim::rand::random::<u64>() % 1_000_000;
                let branch = w.branch();
                w.pg[i].initdb(sysid, branch);
                ActionResult::Done
            }
            Action::Promote => {
                let holder = w.leader();
                if holder.as_deref() != Some(name.as_str()) {
                    w.violation(format!("{name} promoted while etcd's leader key names {holder:?}"));
                }
                let branch = w.branch();
                let ok = w.pg[i].promote(&name, branch);
                if ok {
                    w.out.failovers += 1;
                }
                done(ok)
            }
            Action::Demote { mode } => {
                let pg = &mut w.pg[i];
                pg.stop(!matches!(mode, DemoteMode::Immediate));
                if !matches!(mode, DemoteMode::Offline) {
                    pg.start(false, None);
                }
                ActionResult::Done
            }
            Action::StartPostgres { role } => done(match role {
                StartAs::Primary => w.pg[i].start(true, None),
                StartAs::Replica { upstream } => w.pg[i].start(false, upstream.clone()),
            }),
            Action::StopPostgres { mode } => {
                w.pg[i].stop(*mode == StopMode::Fast);
                ActionResult::Done
            }
            Action::RestartPostgres => {
                let primary = w.pg[i].process == keel_core::PgProcess::RunningPrimary;
                let upstream = w.pg[i].upstream.clone();
                w.pg[i].stop(true);
                done(w.pg[i].start(primary, upstream))
            }
            Action::Follow { upstream } => {
                w.pg[i].upstream = upstream.clone();
                w.pg[i].streaming = false;
                ActionResult::Done
            }
            // Crash recovery ends with a checkpoint: it needs disk.
            Action::RecoverCrash if w.pg[i].disk_full => ActionResult::Failed,
            Action::RecoverCrash => {
                w.pg[i].clean = true;
                ActionResult::Done
            }
            Action::SetSyncStandbyNames(names) => {
                w.pg[i].sync_names = names.clone();
                ActionResult::Done
            }
            // Carried out above, before the lock was taken.
            Action::CloneFrom { .. } | Action::Reinitialize { .. } | Action::Rewind { .. } => {
                unreachable!("{action:?} returned above")
            }
            // The agent carries these out against etcd (exec.rs): one
            // reaching the model of Postgres is a bug in the agent.
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
                w.violation(format!("{name}: the DCS action {action:?} reached Postgres"));
                ActionResult::Failed
            }
        };
        let text = format!("{name} {action:?} -> {result:?}");
        w.event(&text);
        result
    }

    async fn keep_slots(&mut self, _view: &ClusterView) {
        // Replication slots are not modelled: the model keeps all WAL.
    }
}
