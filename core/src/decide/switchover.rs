//! Switchover and manual failover requests (behaviour 7), read from the
//! `failover` key. The leader checks the candidate with the one fitness
//! predicate (rule 10), demotes gracefully and only then releases the lock;
//! the candidate takes the lock after that and clears the request. Unfit
//! candidates are refused with a reason before anyone demotes, as Patroni's
//! 412 answers.

use super::{fitness, Ctx, Verdict};
use crate::dcs::{ClusterView, FailoverKey};
use crate::decision::{Action, DemoteMode, Reason, SwitchoverRefusal};

pub(super) fn as_leader(cx: &mut Ctx, view: &ClusterView) -> Option<Verdict> {
    let request = view.failover.as_ref()?;
    let renew = Action::RenewLease { optime_lsn: cx.optime() };
    let refuse = |why: SwitchoverRefusal| {
        let clear = Action::ClearFailoverRequest { revision: request.revision };
        Some((vec![renew.clone(), clear], Reason::SwitchoverRefused { why }))
    };
    if let Some(leader) = request.leader.as_deref() {
        if leader != cx.me() {
            return refuse(SwitchoverRefusal::OtherLeader { leader: leader.to_owned() });
        }
    }
    match schedule(cx, request) {
        Schedule::Later(_) => return None,
        Schedule::Stale { late_ms } => {
            return refuse(SwitchoverRefusal::ScheduledLongAgo { late_ms });
        }
        Schedule::Now => {}
    }
    let candidate = match request.candidate.as_deref() {
        Some(c) if c == cx.me() => {
            return refuse(SwitchoverRefusal::CandidateIsLeader { candidate: c.to_owned() });
        }
        Some(c) => match fitness::member_fitness(cx, view, c, Some(cx.optime())) {
            Ok(()) => Some(c.to_owned()),
            Err(unfit) => {
                return refuse(SwitchoverRefusal::CandidateUnfit { candidate: c.to_owned(), unfit });
            }
        },
        None if cx.cfg.pause => {
            // Patroni: while paused only a switchover to a named candidate
            // is possible, for nobody else would race.
            return refuse(SwitchoverRefusal::PausedWithoutCandidate);
        }
        None => {
            if !fitness::anyone_else_fit(cx, view, None) {
                return refuse(SwitchoverRefusal::NoFitCandidate);
            }
            None
        }
    };
    let actions =
        vec![Action::Demote { mode: DemoteMode::Graceful }, Action::ReleaseLease { optime_lsn: cx.optime() }];
    Some((actions, Reason::Switchover { candidate }))
}

/// When a request is due, by the wall clock (the only use of it besides
/// display: an operator schedules in wall time).
pub(super) enum Schedule {
    Now,
    Later(u64),
    /// Due so long ago (more than 1.5 `loop_wait`) that carrying it out now
    /// would surprise whoever scheduled it: Patroni cleans such a request
    /// up (`should_run_scheduled_action`), and so does keel.
    Stale {
        late_ms: u64,
    },
}

pub(super) fn schedule(cx: &Ctx, request: &FailoverKey) -> Schedule {
    let Some(at) = request.scheduled_at_wall_ms else {
        return Schedule::Now;
    };
    let now = cx.obs.wall_ms;
    if at > now {
        return Schedule::Later((at - now) as u64);
    }
    let late_ms = (now - at) as u64;
    if late_ms > cx.cfg.loop_wait_ms.saturating_mul(3) / 2 {
        return Schedule::Stale { late_ms };
    }
    Schedule::Now
}

/// How long until a scheduled switchover is due, if it is in the future.
pub(super) fn scheduled_in_ms(cx: &Ctx, request: &FailoverKey) -> Option<u64> {
    match schedule(cx, request) {
        Schedule::Later(in_ms) => Some(in_ms),
        _ => None,
    }
}
