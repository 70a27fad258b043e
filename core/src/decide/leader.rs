//! The lease holder: promote after taking the lock, keep the lock while
//! Postgres is primary, restart a crashed primary within
//! `primary_start_timeout` (behaviour 6), and the leader's housekeeping:
//! history, initialize key, config, synchronous standbys.

use super::{fitness, lease, switchover, sync, Ctx, Verdict};
use std::collections::BTreeSet;

use crate::dcs::{ClusterView, SyncMode};
use crate::decision::{Action, Reason, StartAs, StopMode};
use crate::input::ActionResult;
use crate::pg::{PgProcess, TimelineSwitch};

/// The node holds the lease, so the view's leader key names it (a view in
/// which it does not took the lease away: `lease.rs`, rule 6).
pub(super) fn decide(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    assert_eq!(view.leader_name(), Some(cx.me()), "a lease held under a leader key naming another");
    match cx.obs.pg.process {
        PgProcess::RunningReplica => promote(cx, view),
        PgProcess::Stopped | PgProcess::Starting => primary_down(cx, view),
        PgProcess::RunningPrimary => primary(cx, view),
    }
}

/// Promote only with the lock, and with enough lease left to be worth it
/// (rule 2). In synchronous mode the sync key names this node as leader
/// (and nobody else yet) before Postgres promotes (rule 3).
pub(super) fn promote(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    if let Some(v) = lease::unfit_holder(cx, view) {
        return v;
    }
    let mut actions = Vec::new();
    // Also when the key already names this node with standbys (a leader
    // that demoted and takes the lock again): they may lack what the new
    // term acknowledges before the sync step confirms anyone.
    let claimed =
        view.sync.as_ref().is_some_and(|s| s.leader.as_deref() == Some(cx.me()) && s.members.is_empty());
    if cx.cfg.sync_enabled() && !claimed {
        actions.push(Action::WriteSyncKey {
            members: Default::default(),
            quorum: (cx.cfg.synchronous_mode == SyncMode::Quorum).then_some(0),
            expected_revision: view.sync.as_ref().map(|s| s.revision),
        });
        return (actions, Reason::ClaimingSyncKey);
    }
    if cx.cfg.sync_enabled() {
        // Never the names the server kept from an earlier term: a standby
        // that is gone would hold every commit until the leader's next sync
        // change, and then until the new standby's next reply (1 s).
        let names = sync::at_promotion(cx, view);
        if cx.obs.pg.sync_standby_names != names {
            actions.push(Action::SetSyncStandbyNames(names));
        }
    }
    actions.push(Action::Promote);
    if let Some(f) = &view.failover {
        actions.push(Action::ClearFailoverRequest { revision: f.revision });
    }
    (actions, Reason::Promoting)
}

/// Postgres is down while this node holds the lock: restart it in place
/// while within `primary_start_timeout`; past it, release the lock if some
/// other member could take over (Patroni's behaviour).
fn primary_down(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    let renew = Action::RenewLease { optime_lsn: cx.optime() };
    let now = cx.now();
    let since = cx.prev.primary_down_since_ms.unwrap_or(now);
    cx.next.primary_down_since_ms = Some(since);
    let down_ms = now - since;
    let timeout_ms = cx.cfg.primary_start_timeout_ms;
    // Only a member that could really win the race counts (Patroni's
    // `is_failover_possible`): releasing to nobody leaves the cluster
    // without a primary for good.
    let someone_else = fitness::anyone_else_fit(cx, view, None);
    // Patroni releases at once after a start that failed (`post_recover`),
    // rather than trying again until the timeout: one that is merely slow
    // keeps the lock until `primary_start_timeout`.
    let start_failed = cx.outcome(|a| matches!(a, Action::StartPostgres { role: StartAs::Primary }))
        == Some(ActionResult::Failed);
    if (down_ms >= timeout_ms || start_failed) && someone_else {
        let mut actions = Vec::new();
        if cx.obs.pg.process == PgProcess::Starting {
            actions.push(Action::StopPostgres { mode: StopMode::Immediate });
        }
        actions.push(Action::ReleaseLease { optime_lsn: cx.optime() });
        if start_failed && down_ms < timeout_ms {
            return (actions, Reason::PrimaryStartFailed);
        }
        return (actions, Reason::PrimaryStartTimedOut { down_ms });
    }
    if cx.obs.pg.process == PgProcess::Starting {
        return (vec![renew], Reason::WaitingForPostgres);
    }
    let actions = vec![renew, Action::StartPostgres { role: StartAs::Primary }];
    if cx.prev.primary_down_since_ms.is_none() && view.initialize.as_deref() == Some("") {
        return (actions, Reason::StartingAsPrimary);
    }
    (actions, Reason::PrimaryDown { down_ms, timeout_ms })
}

/// The healthy leader renews its lease every step, then does at most one
/// piece of housekeeping, most urgent first.
fn primary(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    if let Some(v) = switchover::as_leader(cx, view) {
        return v;
    }
    let mut actions = vec![Action::RenewLease { optime_lsn: cx.optime() }];
    let pg = &cx.obs.pg;
    let reason = if view.initialize.as_deref().is_none_or(str::is_empty) {
        let system_id = pg.system_id().unwrap_or_default();
        actions.push(Action::WriteInitializeKey { system_id });
        Reason::WritingInitializeKey
    } else if let Some(members) = failsafe_members(cx, view) {
        actions.push(Action::WriteFailsafeKey { members });
        Reason::LeaderHealthy { name: cx.me().to_owned() }
    } else if view.config.is_none() {
        actions.push(Action::WriteClusterConfig);
        Reason::SeedingConfig
    } else if let Some(switches) = history_to_publish(cx, view) {
        actions.push(Action::WriteHistory { switches });
        Reason::PublishingHistory { timeline: pg.timeline }
    } else if let Some((sync_actions, reason)) = sync::decide(cx, view) {
        actions.extend(sync_actions);
        reason
    } else if let Some(in_ms) = view.failover.as_ref().and_then(|f| switchover::scheduled_in_ms(cx, f)) {
        Reason::SwitchoverScheduled { in_ms }
    } else {
        Reason::LeaderHealthy { name: cx.me().to_owned() }
    };
    (actions, reason)
}

/// In failsafe mode the leader lists the members it knows in `failsafe`:
/// only they may take the lock while failsafe mode is on, for only they
/// answer its pings when etcd is gone. Without the list, a member whose key
/// had expired could promote while this leader holds on by failsafe.
fn failsafe_members(cx: &Ctx, view: &ClusterView) -> Option<BTreeSet<String>> {
    if !cx.cfg.failsafe_mode {
        return None;
    }
    let mut members: BTreeSet<String> = view.members.keys().cloned().collect();
    members.insert(cx.me().to_owned());
    (view.failsafe.as_ref() != Some(&members)).then_some(members)
}

/// The cluster history must be the leader's own: after a promotion it lags,
/// and after a promotion that reused a timeline number it is wrong (another
/// member's switch at the same timeline, perhaps at the same LSN). Publish
/// the local history whenever it differs, naming who was promoted where
/// keel knows it, so that replicas on the other branch see their divergence
/// (rule 4).
fn history_to_publish(cx: &Ctx, view: &ClusterView) -> Option<Vec<TimelineSwitch>> {
    let pg = &cx.obs.pg;
    let last = pg.history.last()?;
    if pg.timeline <= 1 || last.timeline + 1 != pg.timeline {
        return None;
    }
    let switches: Vec<TimelineSwitch> = pg
        .history
        .iter()
        .map(|local| {
            let known = view
                .history
                .iter()
                .find(|c| c.timeline == local.timeline && c.fork_lsn == local.fork_lsn)
                .and_then(|c| c.new_leader.clone());
            let new_leader = if local.timeline == last.timeline {
                Some(pg.timeline_origin.clone().unwrap_or_else(|| cx.me().to_owned()))
            } else {
                local.new_leader.clone().or(known)
            };
            TimelineSwitch { new_leader, ..local.clone() }
        })
        .collect();
    (switches != view.history).then_some(switches)
}
