//! Pause (maintenance) mode: no automatic action except keeping the lock
//! and publishing state, as in Patroni. Fencing still runs before this
//! (see `fencing.rs`): safety does not pause.

use super::{Ctx, Verdict};
use crate::dcs::ClusterView;
use crate::decision::{Action, Reason};

pub(super) fn decide(cx: &mut Ctx, view: &ClusterView) -> Verdict {
    let mine = view.leader_name() == Some(cx.me());
    if cx.holds_lease() && mine {
        let actions = vec![Action::RenewLease {
            optime_lsn: cx.optime(),
        }];
        return (actions, Reason::Paused { leader: true });
    }
    (Vec::new(), Reason::Paused { leader: false })
}
