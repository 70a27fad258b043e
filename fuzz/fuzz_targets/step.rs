//! Drives `Node::step` with arbitrary observation sequences (the world of
//! core/tests/world) and checks the same properties as the property tests:
//! never writable past the lease, never promote without a lease ahead, no
//! lock taken without etcd, deterministic, no panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../core/tests/world/mod.rs"]
mod world;

fuzz_target!(|ticks: Vec<world::Tick>| {
    if ticks.len() > 64 {
        return;
    }
    if let Err(violation) = world::run(&ticks) {
        panic!("{violation}");
    }
});
