//! Bounds on everything the core keeps or emits (TigerBeetle style: a limit on
//! everything). Inputs beyond a bound are truncated at the edge and the reason
//! says so; the core never grows without bound.

/// Members considered in one step. A Patroni cluster rarely has more than a
/// handful; anything past this many is ignored in name order.
pub const MEMBERS_MAX: usize = 64;

/// Actions in one decision. `step` asserts it never plans more.
pub const ACTIONS_MAX: usize = 8;

/// Timeline switches kept from the cluster history or a local history file.
pub const HISTORY_MAX: usize = 1024;

/// Parts per million in one: the unit of `max_clock_drift_ppm`.
pub const PPM: u64 = 1_000_000;
