//! Settings from the command line over the seed's draws, fault targets
//! named by role, and a broken assumption told apart from a keel
//! violation (issue 16 items 2, 3 and 9).
#![cfg(madsim)]

use keel_sim::agents::{run_with, setup_checked, AgentSimConfig, RunOptions};
use keel_sim::faults::{self, Fault, FaultKind};
use keel_sim::settings::{parse_set, parse_tag, Overrides};

fn config(seed: u64, settings: Overrides) -> AgentSimConfig {
    AgentSimConfig { seed, nodes: 3, duration_ms: 300_000, faults: true, settings, ..Default::default() }
}

fn set(pairs: &[&str]) -> Overrides {
    Overrides { set: pairs.iter().map(|p| parse_set(p).unwrap()).collect(), ..Overrides::default() }
}

/// The value of `key` in a settings summary (`key=value` words).
fn value<'a>(summary: &'a str, key: &str) -> &'a str {
    summary
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{key} missing in {summary}"))
}

#[test]
fn settings_given_win_over_the_seed_and_the_others_still_come_from_it() {
    let mut guide = set(&["ttl=30", "loop_wait=10", "retry_timeout=10", "synchronous_mode=true"]);
    guide.tags = vec![parse_tag("b:nofailover=true").unwrap()];
    guide.names = Some(vec!["a".into(), "b".into(), "c".into()]);
    let mut drawn = std::collections::BTreeSet::new();
    for seed in 1..=20 {
        let summary = setup_checked(&config(seed, guide.clone())).unwrap();
        assert!(summary.starts_with("ttl=30 loop_wait=10 retry_timeout=10 "), "{summary}");
        assert_eq!(value(&summary, "synchronous_mode"), "true");
        let b = summary.split_whitespace().find(|w| w.starts_with("b:")).unwrap_or_default();
        assert!(b.split([':', ',']).any(|t| t == "nofailover=true"), "{summary}");
        drawn.insert(value(&summary, "use_pg_rewind").to_owned() + value(&summary, "check_timeline"));
    }
    assert!(drawn.len() > 1, "what is not given still comes from the seed: {drawn:?}");
    // A given ttl shortens the drawn loop_wait and retry_timeout to fit.
    for seed in 1..=100 {
        let summary = setup_checked(&config(seed, set(&["ttl=5"]))).unwrap();
        let (lw, rt): (u64, u64) = (
            value(&summary, "loop_wait").parse().unwrap(),
            value(&summary, "retry_timeout").parse().unwrap(),
        );
        assert!(lw + 2 * rt <= 5, "seed {seed}: {summary}");
    }
    // What the agent's own check refuses is an error before the run.
    let err = setup_checked(&config(1, set(&["ttl=20", "loop_wait=10", "retry_timeout=10"]))).unwrap_err();
    assert!(err.contains("loop_wait + 2*retry_timeout must be <= ttl"), "{err}");
    let err = setup_checked(&config(1, set(&["max_clock_drift=0.7"]))).unwrap_err();
    assert!(err.contains("max_clock_drift"), "{err}");
    let stray = Overrides { tags: vec![parse_tag("pg4:nosync=true").unwrap()], ..Overrides::default() };
    assert!(setup_checked(&config(1, stray)).unwrap_err().contains("no member is named \"pg4\""));
    // A run carries them: the guide's timing, members named a, b, c.
    let out = run_with(&config(3, guide), &RunOptions { record: true, ..RunOptions::default() });
    assert!(out.settings.starts_with("ttl=30 loop_wait=10 retry_timeout=10 "), "{}", out.settings);
    assert!(out.trace.iter().any(|l| l.contains("a agent starts")), "members are named a, b, c");
    assert!(out.writes_acked > 0);
}

#[test]
fn the_draws_reach_the_timings_real_deployments_use() {
    let (mut lw, mut rt, mut ttl) = (0u64, 0u64, 0u64);
    let mut tags = 0;
    for seed in 1..=400 {
        let summary = setup_checked(&config(seed, Overrides::default())).unwrap();
        lw = lw.max(value(&summary, "loop_wait").parse().unwrap());
        rt = rt.max(value(&summary, "retry_timeout").parse().unwrap());
        ttl = ttl.max(value(&summary, "ttl").parse().unwrap());
        tags += usize::from(summary.contains("nofailover=true"));
    }
    // The guide's ttl 30 / loop_wait 10 / retry_timeout 10 lies within.
    assert_eq!((lw, rt), (10, 10));
    assert!(ttl >= 30, "{ttl}");
    assert!(tags > 0, "no seed drew a nofailover member");
}

#[test]
fn role_targets_are_resolved_when_the_fault_starts() {
    let faults = vec![
        Fault { start_ms: 60_000, end_ms: 90_000, kind: FaultKind::NodeCrash { node: faults::PRIMARY } },
        Fault {
            start_ms: 150_000,
            end_ms: 160_000,
            kind: FaultKind::EtcdPartition { node: faults::REPLICA },
        },
    ];
    let opts = RunOptions { faults: Some(faults), record: true, ..RunOptions::default() };
    let out = run_with(&config(5, Overrides::default()), &opts);
    let FaultKind::NodeCrash { node: primary } = out.schedule[0].kind else { panic!("{:?}", out.schedule) };
    let FaultKind::EtcdPartition { node: replica } = out.schedule[1].kind else {
        panic!("{:?}", out.schedule)
    };
    assert!(primary < 3 && replica < 3, "{:?}", out.schedule);
    let line = format!("fault target primary is pg{}", primary + 1);
    assert!(out.trace.iter().any(|l| l.contains(&line)), "the trace says which node: {line}");
    let line = format!("fault target replica is pg{}", replica + 1);
    assert!(out.trace.iter().any(|l| l.contains(&line)), "the trace says which node: {line}");
}

#[test]
fn a_clock_beyond_max_clock_drift_is_a_broken_assumption_not_a_keel_violation() {
    let faults = vec![Fault {
        start_ms: 60_000,
        end_ms: 120_000,
        kind: FaultKind::ClockRate { node: 0, rate_ppm: 300_000 },
    }];
    let opts = RunOptions { faults: Some(faults), ..RunOptions::default() };
    let out = run_with(&config(2, Overrides::default()), &opts);
    assert!(out.violations.iter().any(|v| v.contains("assumption broken: pg1's clock runs 300000 ppm off")));
    assert_eq!(keel_sim::replay::exit_code(&out), 5, "{:?}", out.violations);
    let within = vec![Fault {
        start_ms: 60_000,
        end_ms: 120_000,
        kind: FaultKind::ClockRate { node: 0, rate_ppm: 5_000 },
    }];
    let opts = RunOptions { faults: Some(within), ..RunOptions::default() };
    let out = run_with(&config(2, Overrides::default()), &opts);
    assert!(!out.violations.iter().any(|v| v.contains("assumption broken")), "{:?}", out.violations);
}
