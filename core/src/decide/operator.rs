//! Requests from the operator: shutdown (SIGTERM), restart, reinitialize.

use super::{leader, pause, Ctx, Verdict};
use crate::dcs::ClusterView;
use crate::decision::{Action, DemoteMode, Reason, ReinitializeRefusal, StopMode};
use crate::input::Request;
use crate::pg::PgProcess;
use crate::role::Role;

/// On shutdown the leader stops Postgres first and only then releases the
/// lock, so that a replica takes over at once and never overlaps with it.
pub(super) fn shutdown(cx: &mut Ctx) -> Option<Verdict> {
    if !cx.next.shutdown {
        return None;
    }
    let pg = &cx.obs.pg;
    let leader = cx.holds_lease();
    let mut actions = Vec::new();
    if pg.is_running_primary() {
        actions.push(Action::Demote { mode: DemoteMode::Offline });
    } else if pg.is_running() || pg.process == PgProcess::Starting {
        actions.push(Action::StopPostgres { mode: StopMode::Fast });
    }
    // The lease stays held until the outcomes say Postgres stopped and the
    // key is gone: a failed stop is tried again, never left writable.
    if leader && cx.view.is_some() {
        actions.push(Action::ReleaseLease { optime_lsn: cx.optime() });
    }
    if actions.is_empty() {
        return Some((actions, Reason::ShutDown));
    }
    if leader && cx.view.is_none() {
        return Some((actions, Reason::ShuttingDownWithoutEtcd));
    }
    Some((actions, Reason::ShuttingDown { leader }))
}

/// Restart and reinitialize. A leader is never reinitialized: that would
/// throw away the only complete copy (Patroni answers the same).
pub(super) fn request(cx: &mut Ctx, view: &ClusterView) -> Option<Verdict> {
    // A leader keeps renewing whatever else it does this step.
    let mut actions = Vec::new();
    if cx.holds_lease() && view.leader_name() == Some(cx.me()) {
        actions.push(Action::RenewLease { optime_lsn: cx.optime() });
    }
    let request = cx.obs.request.as_ref()?;
    // A lock holder whose Postgres is not a writable primary has work of
    // its own in this very step: promote, or start its primary again. A
    // request must not put that off while the key is renewed (rule 9: no
    // replica keeps the leader key); a restart is not carried out then, and
    // a reinitialize is refused alongside the leader's own actions.
    if !actions.is_empty() && !cx.obs.pg.is_running_primary() {
        return match request {
            Request::Reinitialize => {
                // What the step would have done without the request: pause
                // first (no promotion but the operator's), as `route` does.
                let (actions, _) =
                    if cx.cfg.pause { pause::decide(cx, view) } else { leader::decide(cx, view) };
                Some((actions, Reason::ReinitializeRefused { why: ReinitializeRefusal::Leader }))
            }
            _ => None,
        };
    }
    match request {
        Request::Restart if cx.obs.pg.is_running() => {
            actions.push(Action::RestartPostgres);
            Some((actions, Reason::Restarting))
        }
        Request::Reinitialize => {
            if cx.holds_lease() || view.leader_name() == Some(cx.me()) {
                return Some((actions, Reason::ReinitializeRefused { why: ReinitializeRefusal::Leader }));
            }
            let Some(leader) = view.leader_name() else {
                return Some((
                    Vec::new(),
                    Reason::ReinitializeRefused { why: ReinitializeRefusal::NoLeader },
                ));
            };
            let source = leader.to_owned();
            if cx.obs.pg.is_running() || cx.obs.pg.process == PgProcess::Starting {
                actions.push(Action::StopPostgres { mode: StopMode::Fast });
            }
            actions.push(Action::Reinitialize { source: source.clone() });
            cx.next.role = Role::Cloning;
            Some((actions, Reason::Reinitializing { source }))
        }
        _ => None,
    }
}
