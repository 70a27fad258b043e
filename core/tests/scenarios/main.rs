//! Scenario tests of keel-core: each names a situation and the expected
//! action. Grouped by the behaviours of issue 2 and the safety rules of
//! ARCHITECTURE.md.

mod harness;

mod bootstrap;
mod lease;
mod fencing;
mod dcs_unreachable;
mod operator;
mod pause;
mod election;
mod switchover;
mod primary_down;
mod follow;
mod rewind;
mod sync;
