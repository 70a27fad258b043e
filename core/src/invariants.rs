//! Properties every step must keep, checked after each `decide`. A
//! violation is a bug in keel: it panics with the rule it broke.

use crate::dcs::DcsView;
use crate::decision::{Action, Decision};
use crate::input::Observation;
use crate::limits::ACTIONS_MAX;
use crate::role;
use crate::state::State;

pub fn check(prev: &State, obs: &Observation, next: &State, decision: &Decision) {
    let now = obs.now_ms;
    let actions = &decision.actions;
    let lease_ahead = next.lease_deadline_ms.is_some_and(|d| d > now);
    assert!(actions.len() <= ACTIONS_MAX, "more than {ACTIONS_MAX} actions: {actions:?}");
    assert!(
        role::is_allowed(prev.role, next.role),
        "role {} -> {} is not in the transition table",
        prev.role,
        next.role
    );
    // Rule 1: a writable primary without a lease ahead demotes in this step.
    if obs.pg.is_running_primary() && !lease_ahead {
        assert!(
            matches!(actions.first(), Some(Action::Demote { .. })),
            "rule 1: primary without a lease ahead at {now} ms must demote first, decided {actions:?}"
        );
    }
    // Rule 2: promote only with a lease whose deadline lies ahead.
    if actions.contains(&Action::Promote) {
        assert!(lease_ahead, "rule 2: promote without a lease ahead at {now} ms");
        // Paused, only the operator's named candidate promotes.
        let requested = match &obs.dcs {
            DcsView::Reachable(v) => v.failover.as_ref().and_then(|f| f.candidate.as_deref()),
            DcsView::Unreachable { .. } => None,
        };
        assert!(
            !next.config.pause || requested == Some(next.name.as_str()),
            "promote while paused without a switchover to this node"
        );
    }
    // Rule 5: nobody takes the lock or promotes without a DCS view.
    if !matches!(obs.dcs, DcsView::Reachable(_)) {
        assert!(
            !actions.iter().any(|a| matches!(a, Action::AcquireLease | Action::Promote)),
            "rule 5: took the lock or promoted without etcd: {actions:?}"
        );
    }
    let demotes = actions.iter().any(|a| matches!(a, Action::Demote { .. }));
    assert!(!(demotes && actions.contains(&Action::Promote)), "promote and demote at once");
}
