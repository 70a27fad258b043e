//! Following a leader (behaviour 9) and repairing a diverged history
//! (behaviour 10, safety rule 4): a replica streams from the leader, or from
//! its `replicatefrom` member; it never streams from a history that
//! diverged from its own. It rewinds first (stopped cleanly, with
//! `use_pg_rewind` and hint bits in WAL), else it is re-initialised.

use super::{rewind, Ctx, Verdict};
use crate::dcs::{ClusterView, MemberRole};
use crate::decision::{Action, DataRemoval, NoRewind, Reason, StartAs, StopMode};
use crate::pg::{ControlState, DataDir, PgProcess};
use crate::role::Role;

pub(super) fn decide(cx: &mut Ctx, view: &ClusterView, leader: &str) -> Verdict {
    let pg = &cx.obs.pg;
    // The leader's member key may lag its promotion; the history may not
    // have it yet either: the newer of the two. A node already on the
    // timeline the leader's own promotion started (it streamed or rewound
    // from it) is on the leader's branch, whatever those stale keys say; so
    // is a node streaming from the leader now, as the leader's walsender
    // serves only timelines of its own history (a demoted primary that
    // restarts right after the promotion streams the new timeline before
    // the leader has published it).
    let streams_from_leader = pg.streaming && pg.upstream.as_deref() == Some(leader);
    let on_leaders_branch = pg.timeline_origin.as_deref() == Some(leader) || streams_from_leader;
    let leader_timeline = view
        .members
        .get(leader)
        .map(|m| m.timeline.max(view.cluster_timeline()))
        .filter(|_| !on_leaders_branch);
    if let Some(fork_lsn) = rewind::divergence(pg, &view.history, leader_timeline) {
        return repair(cx, leader, fork_lsn);
    }
    // A primary that crashed reports its last checkpoint, not the end of
    // its WAL: recover it before trusting that it has not diverged
    // (Patroni's `_handle_crash_recovery`).
    let crashed_primary = !pg.backup_label
        && matches!(&pg.data, DataDir::Initialised(c) if c.state == ControlState::InProduction);
    if pg.process == PgProcess::Stopped && crashed_primary {
        return (vec![Action::RecoverCrash], Reason::RecoveringCrashedPrimary);
    }
    cx.next.rewind_attempted = false;
    cx.next.rewind_failed = false;
    let upstream = upstream(cx, view, leader);
    match pg.process {
        PgProcess::Stopped => {
            let start = Action::StartPostgres { role: StartAs::Replica { upstream: Some(upstream.clone()) } };
            (vec![start], Reason::StartingReplica { upstream })
        }
        PgProcess::Starting => (Vec::new(), Reason::WaitingForPostgres),
        _ if pg.upstream.as_deref() != Some(upstream.as_str()) => {
            let follow = Action::Follow { upstream: Some(upstream.clone()) };
            (vec![follow], Reason::ChangingUpstream { upstream })
        }
        _ => (Vec::new(), Reason::Following { leader: leader.to_owned(), upstream }),
    }
}

/// The `replicatefrom` member when it runs and is not this node, else the
/// leader (Patroni falls back the same way).
fn upstream(cx: &Ctx, view: &ClusterView, leader: &str) -> String {
    cx.obs
        .tags
        .replicatefrom
        .as_deref()
        .filter(|m| {
            *m != cx.me()
                && view.members.get(*m).is_some_and(|x| x.is_running() && x.role == MemberRole::Replica)
        })
        .unwrap_or(leader)
        .to_owned()
}

fn repair(cx: &mut Ctx, leader: &str, fork_lsn: u64) -> Verdict {
    let pg = &cx.obs.pg;
    if pg.is_running() || pg.process == PgProcess::Starting {
        return (vec![Action::StopPostgres { mode: StopMode::Fast }], Reason::StoppingToRewind { fork_lsn });
    }
    let DataDir::Initialised(control) = &pg.data else {
        unreachable!("bootstrap handles an empty data directory before following");
    };
    let impossible = if !cx.cfg.use_pg_rewind {
        Some(NoRewind::Disabled)
    } else if !control.rewindable() {
        Some(NoRewind::NotRewindable)
    } else {
        None
    };
    let source = leader.to_owned();
    // Deleting the data directory throws away the diverged WAL, which in
    // asynchronous mode can hold acknowledged writes: only where the
    // operator allowed it (Patroni's `remove_data_directory_on_*`, off by
    // default); otherwise the node stays stopped and says why.
    let reinit = |cx: &mut Ctx, why: NoRewind, allowed: bool, setting: DataRemoval| {
        if allowed {
            cx.next.role = Role::Cloning;
            let reason = Reason::RewindImpossible { why };
            return (vec![Action::Reinitialize { source: source.clone() }], reason);
        }
        (Vec::new(), Reason::DivergedWaitingForOperator { why, setting })
    };
    if let Some(why) = impossible {
        let allowed = cx.cfg.remove_data_directory_on_diverged_timelines;
        return reinit(cx, why, allowed, DataRemoval::OnDivergedTimelines);
    }
    let allowed = cx.cfg.remove_data_directory_on_rewind_failure;
    if cx.next.rewind_attempted {
        return reinit(cx, NoRewind::StillDiverged, allowed, DataRemoval::OnRewindFailure);
    }
    if cx.next.rewind_failed && allowed {
        return reinit(cx, NoRewind::Failed, true, DataRemoval::OnRewindFailure);
    }
    if !control.state.is_clean() {
        return (vec![Action::RecoverCrash], Reason::RecoveringBeforeRewind);
    }
    // A rewind that failed for a passing reason (its source unreachable, a
    // wrong password) is tried again, once a loop.
    cx.next.role = Role::Rewinding;
    (vec![Action::Rewind { source: source.clone() }], Reason::Rewinding { source, fork_lsn })
}
