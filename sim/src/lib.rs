//! keel-sim: a deterministic cluster simulator for keel.
//!
//! Nodes run against a model of etcd and of Postgres (`pg_model`); faults
//! come from a schedule drawn from one seed (`faults`, or a named drill in
//! `scenarios`); checkers look for split brain, promotions without the
//! leader key, lost acknowledged writes, diverged histories and missing
//! leaders. Every run replays bit for bit from its seed.
//!
//! Two simulators share the models, the fault kinds and the checks:
//! - `agents` (built with `--cfg madsim`, see scripts/sim): every node runs
//!   keel-runtime's agent loop under madsim, against a simulated etcd node
//!   (`kv_model`) over madsim's network and the Postgres model; the
//!   checkers live in `agents::world`.
//! - `cluster`: keel-core's `step` alone, on a 10 ms grid. The fast
//!   property harness, and the one that records engine traces.

#[cfg(madsim)]
pub mod agents;
pub mod cluster;
pub mod etcd_model;
pub mod faults;
pub mod kv_model;
pub mod pg_model;
pub mod replay;
pub mod rng;
pub mod scenarios;
pub mod settings;
pub mod shrink;
pub mod timeline;
pub mod trace;

pub use cluster::{run, Outcome, SimConfig};
