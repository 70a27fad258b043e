//! Pause (maintenance) mode: no automatic action except keeping the lock
//! and publishing state, as in Patroni. What the operator asks for still
//! happens: restart and reinitialize (handled before this), and a
//! switchover to a named candidate, which Patroni allows while paused.
//! Fencing still runs before this (see `fencing.rs`): safety does not pause.

use super::{election, leader, switchover, Ctx, Verdict};
use crate::dcs::ClusterView;
use crate::decision::{Action, Reason};
use crate::pg::PgProcess;

pub(super) fn decide(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    let mine = view.leader_name() == Some(cx.me());
    let candidate = view.failover.as_ref().and_then(|f| f.candidate.as_deref());
    if cx.holds_lease() && mine {
        if cx.obs.pg.process == PgProcess::RunningReplica {
            if candidate == Some(cx.me()) {
                // The operator's switchover to this node: pause stops
                // automatic actions, not the ones asked for (Patroni
                // promotes the candidate that took the lock while paused).
                return leader::promote(cx, view);
            }
            // Demoted by hand: leave the lock to whoever the operator picks.
            let actions = vec![Action::ReleaseLease { optime_lsn: cx.optime() }];
            return (actions, Reason::Paused { leader: true });
        }
        if cx.obs.pg.is_running_primary() && view.failover.is_some() {
            if let Some(v) = switchover::as_leader(cx, view) {
                return v;
            }
        }
        let actions = vec![Action::RenewLease { optime_lsn: cx.optime() }];
        return (actions, Reason::Paused { leader: true });
    }
    if view.leader.is_none() && candidate == Some(cx.me()) {
        return election::decide(cx, view);
    }
    (Vec::new(), Reason::Paused { leader: false })
}
