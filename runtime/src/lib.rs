//! keel-runtime: the node agent. Only the core exists so far; the agent loop, etcd and Postgres adapters come with issue 3.
pub use keel_core as core;
