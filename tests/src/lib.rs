//! keel-tests: fixtures that start real services on loopback for keel's
//! end-to-end tests, each on ports it picks and in a directory of its own,
//! and stop every process they started, by PID, when dropped.

pub mod api;
pub mod bench;
pub mod cluster;
pub mod ctl;
pub mod etcd;
pub mod haproxy;
pub mod postgres;
pub mod scratch;
