//! Pause (maintenance) mode: no automatic action except keeping the lock,
//! publishing state, managing the synchronous standbys and pointing running
//! replicas at the leader, as in Patroni. What the operator asks for still
//! happens: restart and reinitialize (handled before this), and a
//! switchover to a named candidate, which Patroni allows while paused.
//! The lease still fences before this (see `lease.rs`): safety does not pause.

use super::{election, follow, leader, switchover, sync, Ctx, Verdict};
use crate::dcs::ClusterView;
use crate::decision::{Action, Reason};
use crate::pg::PgProcess;

pub(super) fn decide(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    let mine = view.leader_name() == Some(cx.me());
    let candidate = view.failover.as_ref().and_then(|f| f.candidate.as_deref());
    if cx.holds_lease() && mine {
        match cx.obs.pg.process {
            PgProcess::RunningReplica if candidate == Some(cx.me()) => {
                // The operator's switchover to this node: pause stops
                // automatic actions, not the ones asked for (Patroni
                // promotes the candidate that took the lock while paused).
                return leader::promote(cx, view);
            }
            PgProcess::RunningReplica | PgProcess::Stopped => {
                // Demoted or stopped by hand: leave the lock to whoever the
                // operator picks (Patroni: "removed leader lock because
                // postgres is not running [as primary]").
                let actions = vec![Action::ReleaseLease { optime_lsn: cx.optime() }];
                return (actions, Reason::Paused { leader: true });
            }
            PgProcess::RunningPrimary if view.failover.is_some() => {
                if let Some(v) = switchover::as_leader(cx, view) {
                    return v;
                }
            }
            PgProcess::RunningPrimary | PgProcess::Starting => {}
        }
        let mut actions = vec![Action::RenewLease { optime_lsn: cx.optime() }];
        if cx.obs.pg.is_running_primary() {
            // Patroni keeps managing the synchronous standbys while paused
            // (`enforce_primary_role` runs `process_sync_replication`):
            // otherwise a sync standby lost during maintenance holds every
            // commit in strict mode until resume.
            if let Some((sync_actions, reason)) = sync::decide(cx, view) {
                actions.extend(sync_actions);
                return (actions, reason);
            }
        }
        return (actions, Reason::Paused { leader: true });
    }
    if view.leader.is_none() && candidate == Some(cx.me()) {
        return election::decide(cx, view);
    }
    if let Some(leader) = view.leader_name().filter(|l| *l != cx.me()) {
        if cx.obs.pg.is_running_replica() {
            // A running replica still follows a new leader while paused
            // (Patroni's `follow` repoints it); nothing else of following
            // runs: no start, no rewind, no reinitialize.
            let (actions, reason) = follow::decide(cx, view, leader);
            if matches!(reason, Reason::ChangingUpstream { .. }) {
                return (actions, reason);
            }
        }
    }
    (Vec::new(), Reason::Paused { leader: false })
}
