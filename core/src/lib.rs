//! keel-core: the pure decision engine of keel.
//!
//! Given what a node observes (the DCS, its Postgres, its own monotonic
//! time, the outcomes of its last actions), [`Node::step`] decides what it
//! does next: an ordered list of [`Action`]s, when to wake, and a
//! [`Reason`] a person can read. No I/O, no clock, no randomness: the
//! production agent, the simulator and the fuzzers all drive this one
//! function. See ARCHITECTURE.md for the safety rules it keeps.

#![forbid(unsafe_code)]

pub mod dcs;
mod decide;
pub mod decision;
pub mod input;
pub mod invariants;
pub mod limits;
pub mod pg;
pub mod rank;
pub mod role;
pub mod state;
pub mod step;
pub mod time;
pub mod trace;

pub use dcs::{ClusterView, DcsView, DynamicConfig, Member, MemberRole, MemberState, SyncMode, Tags};
pub use decide::rewind::divergence;
pub use decision::{
    Action, DataRemoval, Decision, DemoteMode, Lsn, MemberStatus, NoRewind, Reason, ReinitializeRefusal,
    StartAs, StopMode, SwitchoverRefusal, SyncUpdate, Unfit,
};
pub use input::{ActionResult, Observation, Outcome, Request};
pub use pg::{
    ControlData, ControlState, DataDir, PgFacts, PgProcess, Standby, StandbySyncState, SyncNames,
    TimelineSwitch,
};
pub use role::Role;
pub use state::State;
pub use step::Node;
