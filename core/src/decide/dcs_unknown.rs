//! No usable DCS view (safety rule 5): etcd unreachable, or a view older
//! than one already seen. Nobody promotes; a leader keeps its role while
//! its lease lasts (rule 6, `lease.rs`, which fences it before this runs).

use super::{Ctx, Verdict};
use crate::dcs::DcsView;
use crate::decision::{Action, Reason};

/// No usable DCS view: nobody promotes (rule 5). A leader with lease time
/// left keeps serving (rule 6), and in failsafe mode asks every member to
/// confirm it, which extends its lease. Failsafe covers an etcd that does
/// not answer; Patroni also enters it when etcd answers reads but refuses
/// writes, keel does not (README, Differences from Patroni).
pub(super) fn decide(cx: &mut Ctx) -> Verdict {
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
