//! Property tests over random sequences of observations (issue 2):
//! a node is never writable after a step whose `now` is past its lease
//! deadline; promote is never decided without a lease whose deadline lies
//! ahead; `step` is deterministic and never panics. The world they run in
//! is `world/mod.rs`, shared with the fuzz target.

mod world;

use std::collections::BTreeMap;

use keel_core::*;
use proptest::prelude::*;
use world::{observe, run, Tick};

fn tick() -> impl Strategy<Value = Tick> {
    (
        (
            0u64..40_000,
            prop::bool::weighted(0.8),
            prop::sample::select(vec![0u64, 0, 0, 3]),
            0u8..4,
            0u8..4,
            0u64..5_000,
        ),
        (1u32..4, prop::option::of(0u64..5_000), prop::collection::vec(0u8..4, 0..8), 0u64..3_000),
        (0u8..3, any::<bool>(), prop::bool::weighted(0.1), 0u8..12, prop::bool::weighted(0.05)),
    )
        .prop_map(|(a, b, c)| Tick {
            advance_ms: a.0,
            dcs_up: a.1,
            revision_back: a.2,
            leader: a.3,
            process: a.4,
            lsn: a.5,
            timeline: b.0,
            history_fork: b.1,
            results: b.2,
            send_delay_ms: b.3,
            sync_mode: c.0,
            failsafe: c.1,
            pause: c.2,
            request: c.3,
            data_empty: c.4,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn random_worlds_keep_lease_promote_and_determinism_properties(ticks in prop::collection::vec(tick(), 1..40)) {
        run(&ticks).map_err(TestCaseError::fail)?;
    }
}

/// The state survives a JSON round trip: a trace can carry it.
#[test]
fn state_round_trips_through_json() {
    let ticks: Vec<Tick> = (0..20)
        .map(|i| Tick {
            advance_ms: 1_500,
            dcs_up: i % 7 != 3,
            revision_back: 0,
            leader: (i % 4) as u8,
            process: (i % 4) as u8,
            lsn: 100 * i,
            timeline: 1,
            history_fork: None,
            results: vec![0, 0],
            send_delay_ms: 10,
            sync_mode: 1,
            failsafe: false,
            pause: false,
            request: 11,
            data_empty: false,
        })
        .collect();
    let mut node = Node::new("pg1");
    let mut prev = Vec::new();
    let mut map = BTreeMap::new();
    for (i, t) in ticks.iter().enumerate() {
        let obs = observe(t, 1_000 + i as u64 * 1_500, 1_000, 10 + i as u64, &prev);
        prev = node.step(&obs).actions;
        let json = serde_json::to_string(node.state()).unwrap();
        let back: State = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, node.state());
        map.insert(i, json.len());
    }
    assert_eq!(map.len(), 20);
}
