//! keel-runtime: the node agent. It observes etcd and Postgres, asks
//! keel-core what to do, and does it.
//!
//! - `config`: Patroni's YAML configuration, loaded and validated.
//! - `dcs`: Patroni's key layout in etcd over a small etcd-shaped trait,
//!   and the binding of that trait to etcd-client.
//! - `api`: Patroni's REST API (health checks, `/patroni`).

pub mod agent;
pub mod api;
pub mod config;
pub mod ctl;
pub mod dcs;
pub mod pg;
