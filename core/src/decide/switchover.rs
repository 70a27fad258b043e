//! Switchover and manual failover requests (behaviour 7), read from the
//! `failover` key. The leader checks the candidate, demotes gracefully and
//! only then releases the lock; the candidate takes the lock after that and
//! clears the request. Unfit candidates are refused with a reason, as
//! Patroni's 412 answers.

use super::{election, Ctx, Verdict};
use crate::dcs::{ClusterView, FailoverKey, SyncMode};
use crate::decision::{Action, DemoteMode, Reason, Unfit};

pub(super) fn as_leader(cx: &mut Ctx, view: &ClusterView) -> Option<Verdict> {
    let request = view.failover.as_ref()?;
    let renew = Action::RenewLease { optime_lsn: cx.optime() };
    let refuse = |why: String| {
        let clear = Action::ClearFailoverRequest { revision: request.revision };
        Some((vec![renew.clone(), clear], Reason::SwitchoverRefused { why }))
    };
    if let Some(leader) = request.leader.as_deref() {
        if leader != cx.me() {
            return refuse(format!("it names {leader} as leader, but I am the leader"));
        }
    }
    if scheduled_in_ms(cx, request).is_some() {
        // Not yet: the leader goes on with its housekeeping meanwhile.
        return None;
    }
    let candidate = match request.candidate.as_deref() {
        Some(c) if c == cx.me() => return refuse(format!("{c} is already the leader")),
        Some(c) => match candidate_fitness(cx, view, c, true) {
            Ok(()) => Some(c.to_owned()),
            Err(why) => return refuse(format!("candidate {c} is {why}")),
        },
        None => {
            let any =
                view.members.keys().any(|m| m != cx.me() && candidate_fitness(cx, view, m, true).is_ok());
            if !any {
                return refuse("no good candidates have been found".to_owned());
            }
            None
        }
    };
    let actions =
        vec![Action::Demote { mode: DemoteMode::Graceful }, Action::ReleaseLease { optime_lsn: cx.optime() }];
    Some((actions, Reason::Switchover { candidate }))
}

/// How long until a scheduled switchover is due, if it is in the future.
pub(super) fn scheduled_in_ms(cx: &Ctx, request: &FailoverKey) -> Option<u64> {
    let at = request.scheduled_at_wall_ms?;
    (at > cx.obs.wall_ms).then(|| (at - cx.obs.wall_ms) as u64)
}

/// Whether `name` could take over, from its published state: running,
/// allowed to fail over, in the sync key in synchronous mode, and (with
/// `check_lag`) within the lag limit of this node's position.
pub(super) fn candidate_fitness(
    cx: &Ctx,
    view: &ClusterView,
    name: &str,
    check_lag: bool,
) -> Result<(), Unfit> {
    let Some(member) = view.members.get(name) else {
        return Err(Unfit::UnknownMember);
    };
    if !member.is_running() {
        return Err(Unfit::NotRunning);
    }
    if !member.tags.can_fail_over() {
        return Err(Unfit::NoFailoverTag);
    }
    if !election::failsafe_allows(cx, view, name) {
        return Err(Unfit::NotInFailsafeSet);
    }
    if cx.cfg.synchronous_mode != SyncMode::Off
        && !view.sync.as_ref().is_some_and(|s| s.members.contains(name))
    {
        return Err(Unfit::NotSyncStandby);
    }
    let lag_bytes = cx.optime().saturating_sub(member.lsn);
    let max_bytes = cx.cfg.maximum_lag_on_failover_bytes;
    if check_lag && lag_bytes > max_bytes {
        return Err(Unfit::Lagging { lag_bytes, max_bytes });
    }
    Ok(())
}
