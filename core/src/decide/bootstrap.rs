//! Bootstrap race and first clone (behaviour 1): exactly one node wins the
//! `initialize` key and runs initdb; the others wait for a leader and clone.

use super::{Ctx, Verdict};
use crate::dcs::{ClusterView, MemberState};
use crate::decision::{Action, Reason};
use crate::input::ActionResult;
use crate::pg::DataDir;
use crate::rank::Rank;
use crate::role::Role;

pub(super) fn decide(cx: &mut Ctx, view: &ClusterView) -> Option<Verdict> {
    if let (Some(cluster), Some(local)) = (view.initialize.as_deref(), cx.obs.pg.system_id()) {
        if !cluster.is_empty() && cluster != local.to_string() {
            let reason = Reason::SystemIdMismatch { local, cluster: cluster.to_owned() };
            return Some((Vec::new(), reason));
        }
    }
    match &cx.obs.pg.data {
        DataDir::Initialised(control) if unknown_cluster(cx, view) => {
            let system_id = control.system_id;
            Some((Vec::new(), Reason::NoClusterForExistingData { system_id }))
        }
        DataDir::Initialised(_) => after_initdb(cx),
        DataDir::Empty => Some(empty(cx, view)),
    }
}

/// The scope holds no cluster (no `initialize` key, no leader), yet this
/// node has a data directory it did not just initialise: a wrong `scope`
/// or `namespace`, or a wiped etcd. Racing would make it the primary of a
/// second cluster next to the real one (two primaries), so it refuses, as
/// Patroni refuses a replica's data. Patroni would take the lock with a
/// primary's data; keel does not, since it cannot tell a wiped etcd from a
/// wrong scope. The operator re-seeds on purpose by writing the data's
/// system identifier to the `initialize` key; members with that data may
/// then race as usual.
fn unknown_cluster(cx: &Ctx, view: &ClusterView) -> bool {
    view.initialize.is_none()
        && view.leader.is_none()
        && cx.next.role != Role::Bootstrapping
        && !cx.holds_lease()
}

/// initdb finished: take the lock before starting Postgres as primary.
fn after_initdb(cx: &mut Ctx) -> Option<Verdict> {
    if cx.next.role != Role::Bootstrapping || cx.holds_lease() {
        return None;
    }
    if cx.outcome(|a| *a == Action::AcquireLease) == Some(ActionResult::Failed) {
        cx.next.role = Role::Replica;
        return None;
    }
    Some((vec![Action::AcquireLease], Reason::BootstrapDoneTakingLease))
}

fn empty(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    if cx.holds_lease() && view.leader_name() == Some(cx.me()) {
        // The leader's data directory is gone: nothing to serve from.
        // Release the lock now rather than let the lease lapse (Patroni:
        // "released leader key voluntarily as data dir empty").
        let release = Action::ReleaseLease { optime_lsn: cx.prev.last_leader_lsn };
        return (vec![release], Reason::DataDirectoryEmptyReleasing);
    }
    if cx.cfg.pause && cx.next.role != Role::Bootstrapping {
        // Patroni: "running with empty data directory"; no clone, no
        // bootstrap while paused.
        return (Vec::new(), Reason::Paused { leader: false });
    }
    if cx.next.role == Role::Bootstrapping {
        if cx.outcome(|a| *a == Action::Bootstrap) == Some(ActionResult::Failed) {
            cx.next.role = Role::Uninitialized;
            let revision = view.initialize_revision;
            return (vec![Action::CancelInitialize { revision }], Reason::BootstrapFailed);
        }
        return (vec![Action::Bootstrap], Reason::WonBootstrapRace);
    }
    if let Some(source) = clone_source(cx, view) {
        if cx.outcome(|a| matches!(a, Action::CloneFrom { .. })) == Some(ActionResult::Failed) {
            cx.next.role = Role::Uninitialized;
            return (Vec::new(), Reason::CloneFailed { source });
        }
        cx.next.role = Role::Cloning;
        return (vec![Action::CloneFrom { source: source.clone() }], Reason::Cloning { source });
    }
    match view.initialize.as_deref() {
        // A member that may never be promoted never bootstraps either: it
        // would become the primary (Patroni's `bootstrap` leaves it to
        // the others).
        None if view.leader.is_none() && !cx.obs.tags.can_fail_over() => {
            (Vec::new(), Reason::WaitingForLeaderToClone)
        }
        None if view.leader.is_none() => (vec![Action::TakeInitializeKey], Reason::BootstrapRace),
        Some("") if view.leader.is_none() => orphaned_initialize(cx, view),
        _ => (Vec::new(), Reason::WaitingForLeaderToClone),
    }
}

/// `initialize` is taken but nobody is bootstrapping: its winner died, or
/// never learnt that it won (its answer was lost: unknown is not lost, and
/// not won either). After a TTL with no member initializing, clear it so
/// that the race runs again; otherwise the cluster would wait forever.
///
/// The TTL counts for one key: taken again since (a new revision), it is
/// someone's fresh bid, whose member key may not show it initializing yet;
/// the count starts over. The clear deletes only the revision seen, so two
/// members clearing the same stale key never delete the winner's new one
/// (keel-sim, seed 1836: both ran initdb, the loser never joined).
fn orphaned_initialize(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    let bootstrapping = view.members.values().any(|m| m.state == MemberState::InitializingNewCluster);
    if bootstrapping {
        return (Vec::new(), Reason::LostBootstrapRace);
    }
    let now = cx.now();
    let revision = view.initialize_revision;
    let since = cx.prev.orphan_initialize_since_ms.filter(|_| cx.prev.orphan_initialize_revision == revision);
    let since = since.unwrap_or(now);
    cx.next.orphan_initialize_since_ms = Some(since);
    cx.next.orphan_initialize_revision = revision;
    if now - since >= cx.cfg.ttl_ms {
        cx.next.orphan_initialize_since_ms = None;
        cx.next.orphan_initialize_revision = 0;
        let idle_ms = now - since;
        return (vec![Action::CancelInitialize { revision }], Reason::OrphanedInitialize { idle_ms });
    }
    (Vec::new(), Reason::LostBootstrapRace)
}

/// A running member tagged `clonefrom` (the furthest ahead), else the leader
/// (Patroni's `get_clone_member`, made deterministic).
fn clone_source(cx: &Ctx, view: &ClusterView) -> Option<String> {
    let leader = view.leader_name().filter(|l| *l != cx.me())?;
    let tagged = view
        .members
        .iter()
        .filter(|(name, m)| *name != cx.me() && m.tags.clonefrom && m.is_running())
        .max_by(|(a, ma), (b, mb)| {
            let ra = Rank { lsn: ma.lsn, priority: 0, name: a };
            let rb = Rank { lsn: mb.lsn, priority: 0, name: b };
            ra.cmp(&rb)
        })
        .map(|(name, _)| name.clone());
    Some(tagged.unwrap_or_else(|| leader.to_owned()))
}
