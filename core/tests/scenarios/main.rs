//! Scenario tests of keel-core: each names a situation and the expected
//! action. Grouped by the behaviours of issue 2 and the safety rules of
//! ARCHITECTURE.md.

mod harness;

mod bootstrap;
mod dcs_unreachable;
mod election;
mod fencing;
mod follow;
mod found_by_sim;
mod invariant_checks;
mod lease;
mod operator;
mod pause;
mod primary_down;
mod rewind;
mod switchover;
mod sync;
