//! keel-sim: a deterministic cluster simulator for keel.
//!
//! Nodes run keel-core's `step` against a model of etcd (`etcd_model`) and
//! of Postgres (`pg_model`); faults come from a schedule drawn from one
//! seed (`faults`); checkers look for split brain, lost acknowledged
//! writes, diverged histories and missing leaders. Every run replays bit
//! for bit from its seed.
//!
//! This is the core-level simulator. The madsim simulator of issue 4 will
//! run the production agent loop itself over simulated network and time,
//! reusing these models and checkers.

#[cfg(madsim)]
pub mod agents;
pub mod cluster;
pub mod etcd_model;
pub mod faults;
pub mod kv_model;
pub mod pg_model;
pub mod rng;
pub mod scenarios;

pub use cluster::{run, Outcome, SimConfig};
