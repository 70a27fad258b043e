//! The node's role and the one table of allowed transitions (s2n-quic style:
//! an impossible transition is a bug and asserts).

use std::fmt;

use serde::{Deserialize, Serialize};

/// What the node is doing, as it remembers between steps. Postgres' own
/// state is observed each step; the role is the node's intent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// No data directory yet.
    Uninitialized,
    /// Won the initialize key; initdb runs or ran.
    Bootstrapping,
    /// A base backup runs (first clone or reinitialize).
    Cloning,
    /// Has data and does not hold the lease.
    Replica,
    /// Rewinding its data directory to the leader's history.
    Rewinding,
    /// Holds the leader lease.
    Leader,
    /// Shut down on request; does nothing more.
    Stopped,
}

use Role::*;

/// Every allowed change of role. Staying in the same role is always allowed.
pub const TRANSITIONS: &[(Role, Role)] = &[
    (Uninitialized, Bootstrapping),
    (Uninitialized, Cloning),
    (Uninitialized, Replica),
    (Uninitialized, Leader),
    // A restarted agent with no memory over a diverged data directory.
    (Uninitialized, Rewinding),
    (Bootstrapping, Uninitialized),
    (Bootstrapping, Leader),
    (Bootstrapping, Replica),
    (Cloning, Replica),
    (Cloning, Uninitialized),
    (Replica, Leader),
    (Replica, Rewinding),
    (Replica, Cloning),
    (Replica, Uninitialized),
    // A reinitialized copy can still be behind a diverged history.
    (Cloning, Rewinding),
    (Rewinding, Replica),
    (Rewinding, Cloning),
    (Leader, Replica),
    // The lease can lapse between two steps: a former leader repairs its
    // history like any replica.
    (Leader, Rewinding),
    (Leader, Cloning),
    (Uninitialized, Stopped),
    (Bootstrapping, Stopped),
    (Cloning, Stopped),
    (Replica, Stopped),
    (Rewinding, Stopped),
    (Leader, Stopped),
];

pub fn is_allowed(from: Role, to: Role) -> bool {
    from == to || TRANSITIONS.contains(&(from, to))
}

/// The table as a Graphviz diagram (generated, never drawn by hand).
pub fn diagram() -> String {
    let mut out = String::from("digraph keel_roles {\n");
    for (from, to) in TRANSITIONS {
        out.push_str(&format!("  {from} -> {to};\n"));
    }
    out.push_str("}\n");
    out
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopped_is_terminal() {
        for (from, _) in TRANSITIONS {
            assert_ne!(*from, Stopped);
        }
    }

    #[test]
    fn leader_is_reached_only_from_replica_bootstrap_or_fresh_start() {
        let sources: Vec<Role> =
            TRANSITIONS.iter().filter(|(_, to)| *to == Leader).map(|(f, _)| *f).collect();
        assert_eq!(sources, vec![Uninitialized, Bootstrapping, Replica]);
    }

    #[test]
    fn diagram_lists_every_transition() {
        assert_eq!(diagram().matches("->").count(), TRANSITIONS.len());
    }
}
