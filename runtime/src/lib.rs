//! keel-runtime: the node agent. It observes etcd and Postgres, asks
//! keel-core what to do, and does it.
//!
//! - `config`: Patroni's YAML configuration, loaded and validated.
//! - `dcs`: Patroni's key layout in etcd over a small etcd-shaped trait,
//!   and the binding of that trait to etcd-client.
//! - `api`: Patroni's REST API (health checks, status pages, operations).
//! - `ctl`: keelctl, the operator CLI (patronictl's counterpart).
//! - `pg`: the local Postgres: SQL facts, server binaries, parsers.
//!
//! Feature `io` (default) brings the real world: etcd-client, Postgres,
//! the REST API server and client, metrics, the `keel` and `keelctl`
//! binaries. keel-sim builds without it, under `--cfg madsim`: the agent
//! loop, the DCS layer over `Kv`, config and the status the agent
//! publishes.

pub mod agent;
pub mod api;
pub mod config;
#[cfg(feature = "io")]
pub mod ctl;
pub mod dcs;
#[cfg(feature = "io")]
pub mod pg;
