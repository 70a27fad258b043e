//! Self-fencing (safety rules 1 and 6) and the DCS-unknown case (rule 5).
//!
//! A primary is writable only while it holds the lease by its own clock.
//! Past the deadline it demotes at once, in that very step, whatever else is
//! going on (pause included: a stale `pause` flag must not keep a primary
//! writable while another node, seeing the cluster resumed, promotes).

use super::{Ctx, Verdict};
use crate::dcs::DcsView;
use crate::decision::{Action, DemoteMode, Reason};
use crate::input::ActionResult;

/// Demotes a running primary that has no lease, has passed its deadline, has
/// seen its lock taken, or is about to run out without a confirmed renewal.
pub(super) fn decide(cx: &mut Ctx) -> Option<Verdict> {
    if !cx.obs.pg.is_running_primary() {
        return None;
    }
    let now = cx.now();
    let immediate = |reason| Some((vec![Action::Demote { mode: DemoteMode::Immediate }], reason));
    let holder = cx.view.and_then(|v| v.leader_name()).filter(|h| *h != cx.me()).map(str::to_owned);
    let Some(deadline) = cx.next.lease_deadline_ms else {
        if cx.lock_lost {
            return immediate(Reason::LockLost { holder });
        }
        return immediate(Reason::NoLease);
    };
    if now >= deadline {
        return immediate(Reason::LeaseExpired { overdue_ms: now - deadline });
    }
    // A definite fact from the DCS: the key is gone or names someone else.
    if cx.view.is_some_and(|v| v.leader_name() != Some(cx.me())) {
        return immediate(Reason::LockLost { holder });
    }
    let remaining_ms = deadline - now;
    let gentle_ms = cx.cfg.gentle_demote_ms();
    // etcd answered this step and still names me: the renewal goes first,
    // while half the gentle window is left for it (the agent bounds it by
    // the lease), and the gentle demotion waits for one that does not
    // confirm (rule 6; issue 15: a leader whose read outlasted an etcd
    // blip demoted in the step in which etcd answered again).
    let renewal_failed = cx
        .obs
        .outcomes
        .iter()
        .any(|o| matches!(o.action, Action::RenewLease { .. }) && o.result != ActionResult::Done);
    if cx.view.is_some() && !renewal_failed && remaining_ms > gentle_ms / 2 {
        return None;
    }
    if remaining_ms <= gentle_ms {
        // On shutdown the gentle demote is the final stop.
        let mode = if cx.next.shutdown { DemoteMode::Offline } else { DemoteMode::Graceful };
        let mut actions = vec![Action::Demote { mode }];
        if cx.view.is_some() {
            actions.push(Action::ReleaseLease { optime_lsn: cx.optime() });
        }
        return Some((actions, Reason::LeaseRunningOut { remaining_ms }));
    }
    None
}

/// No usable DCS view: nobody promotes (rule 5). A leader with lease time
/// left keeps serving (rule 6), and in failsafe mode asks every member to
/// confirm it, which extends its lease. Failsafe covers an etcd that does
/// not answer; Patroni also enters it when etcd answers reads but refuses
/// writes, keel does not (README, Differences from Patroni).
pub(super) fn dcs_unknown(cx: &mut Ctx) -> Verdict {
    let now = cx.now();
    if let DcsView::Reachable(v) = &cx.obs.dcs {
        let reason = Reason::StaleView { revision: v.revision, seen_revision: cx.prev.seen_revision };
        return (dcs_unknown_actions(cx), reason);
    }
    let since = match cx.obs.dcs {
        DcsView::Unreachable { since_ms } => since_ms,
        DcsView::Reachable(_) => now,
    };
    let unreachable_ms = now.saturating_sub(since);
    let actions = dcs_unknown_actions(cx);
    let reason = match cx.next.lease_remaining_ms(now) {
        Some(_) if !actions.is_empty() => Reason::FailsafeHolding { members: cx.prev.known_members.len() },
        Some(remaining_ms) if cx.obs.pg.is_running_primary() => {
            Reason::DcsUnreachableLeader { unreachable_ms, remaining_ms }
        }
        _ => Reason::DcsUnreachableReplica { unreachable_ms },
    };
    (actions, reason)
}

fn dcs_unknown_actions(cx: &Ctx) -> Vec<Action> {
    if cx.cfg.failsafe_mode && cx.holds_lease() && cx.obs.pg.is_running_primary() {
        vec![Action::CheckFailsafe { members: cx.prev.known_members.clone() }]
    } else {
        Vec::new()
    }
}
