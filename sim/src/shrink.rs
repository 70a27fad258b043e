//! Shrinking a failing seed's fault schedule (`keel-sim shrink --seed S`):
//! delta debugging over the schedule's fault list. Everything else (the
//! cluster's configuration, clocks, madsim's random draws) still comes
//! from the seed, so a subset of the faults replays with
//! `keel-sim run --seed S --faults FILE`. A subset still fails when one of
//! its violations is of the same kind as the original run's first one.

use std::path::Path;

use crate::cluster::Outcome;
use crate::faults::{self, Fault};

/// The kind of a violation, from the checkers' wording, without its
/// times, names and figures.
pub fn violation_kind(violation: &str) -> String {
    let text = violation.split_once("s ").filter(|(t, _)| t.starts_with("t=")).map_or(violation, |(_, v)| v);
    const KINDS: [(&str, &str); 10] = [
        ("split brain", "split-brain"),
        ("promoted while", "promotion-without-leader-key"),
        ("liveness: no writable primary", "no-writable-primary"),
        ("liveness: not streaming", "replica-not-streaming"),
        ("liveness: a cluster without faults", "leader-change-without-faults"),
        ("acknowledged writes lost", "lost-acknowledged-writes"),
        ("is not a prefix", "diverged-history"),
        ("holds the leader key as a replica", "replica-holds-leader-key"),
        ("which stopped confirming", "silent-sync-standby-kept"),
        ("panicked", "panic"),
    ];
    if let Some((_, kind)) = KINDS.iter().find(|(pattern, _)| text.contains(pattern)) {
        return (*kind).to_owned();
    }
    // A checker this table does not know: its first words, figures and
    // member names dropped.
    text.split_whitespace()
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kind the shrinker keeps: that of the run's first violation.
pub fn target_kind(o: &Outcome) -> Option<String> {
    o.violations.first().map(|v| violation_kind(v))
}

/// Whether the run has a violation of `kind`.
pub fn fails_with(o: &Outcome, kind: &str) -> bool {
    o.violations.iter().any(|v| violation_kind(v) == kind)
}

/// Delta debugging (ddmin, complements only): drops halves of the list,
/// then smaller and smaller chunks down to single faults, keeping every
/// reduction for which `fails` still holds. The result is 1-minimal: no
/// single fault can be dropped from it. Returns it and the number of runs.
pub fn shrink(faults: &[Fault], mut fails: impl FnMut(&[Fault]) -> bool) -> (Vec<Fault>, u32) {
    let mut runs = 0;
    let mut current = faults.to_vec();
    let mut parts = 2usize;
    while current.len() >= 2 {
        let chunk = current.len().div_ceil(parts);
        let mut reduced = false;
        for start in (0..current.len()).step_by(chunk) {
            let rest: Vec<Fault> = current[..start]
                .iter()
                .chain(current[(start + chunk).min(current.len())..].iter())
                .cloned()
                .collect();
            runs += 1;
            if fails(&rest) {
                current = rest;
                parts = (parts - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if parts >= current.len() {
                break;
            }
            parts = (parts * 2).min(current.len());
        }
    }
    if current.len() == 1 {
        runs += 1;
        if fails(&[]) {
            current.clear();
        }
    }
    (current, runs)
}

/// The fields of a fault that name a member: an index, a member's name or
/// a role (`faults::ROLES`).
const MEMBER_FIELDS: [&str; 3] = ["node", "to", "candidate"];

/// Rewrites the member fields of every object in `value` with `f`.
fn map_members(
    value: &mut serde_json::Value,
    f: &mut impl FnMut(&mut serde_json::Value) -> Result<(), String>,
) -> Result<(), String> {
    match value {
        serde_json::Value::Array(items) => items.iter_mut().try_for_each(|v| map_members(v, f)),
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if MEMBER_FIELDS.contains(&key.as_str()) {
                    f(v)?;
                }
                map_members(v, f)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A fault list as the JSON `--faults FILE` reads: members by index, role
/// targets by name.
pub fn faults_json(faults: &[Fault]) -> String {
    let mut value = serde_json::to_value(faults).expect("faults serialize");
    let _ = map_members(&mut value, &mut |v| {
        if let Some(role) = v.as_u64().and_then(|n| usize::try_from(n).ok()).and_then(faults::role_name) {
            *v = serde_json::Value::from(role);
        }
        Ok(())
    });
    let mut text = serde_json::to_string_pretty(&value).expect("faults serialize");
    text.push('\n');
    text
}

/// Reads a `--faults` file for a cluster of the members `names`, in a run
/// of `duration_ms`: a clear error for anything that is not a list of
/// faults on those members within the run.
pub fn read_faults(path: &Path, names: &[String], duration_ms: u64) -> Result<Vec<Fault>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let faults = parse_faults(&text, names).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some((i, f)) = faults.iter().enumerate().find(|(_, f)| f.end_ms > duration_ms) {
        return Err(format!(
            "{}: fault {} ends at {} ms, past the end of the run ({duration_ms} ms, --duration-s)",
            path.display(),
            i + 1,
            f.end_ms
        ));
    }
    Ok(faults)
}

/// Parses a fault list for a cluster of the members `names`. A member is
/// an index, a name, or a role (`"primary"`, `"sync_standby"`,
/// `"replica"`, `"leader_key_holder"`) resolved when the fault starts;
/// unknown fields are refused.
pub fn parse_faults(text: &str, names: &[String]) -> Result<Vec<Fault>, String> {
    let nodes = names.len();
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a list of faults: {e}"))?;
    map_members(&mut value, &mut |v| {
        let Some(name) = v.as_str() else {
            return Ok(());
        };
        let index = faults::ROLES
            .iter()
            .find(|(_, role)| *role == name)
            .map(|(n, _)| *n)
            .or_else(|| names.iter().position(|n| n == name))
            .ok_or_else(|| {
                let roles: Vec<&str> = faults::ROLES.iter().map(|(_, r)| *r).collect();
                format!(
                    "no member or role is named {name:?} (members: {}; roles: {})",
                    names.join(", "),
                    roles.join(", ")
                )
            })?;
        *v = serde_json::Value::from(index as u64);
        Ok(())
    })?;
    let faults: Vec<Fault> =
        serde_json::from_value(value).map_err(|e| format!("not a list of faults: {e}"))?;
    for (i, f) in faults.iter().enumerate() {
        if f.end_ms < f.start_ms {
            return Err(format!(
                "fault {}: it ends ({} ms) before it starts ({} ms)",
                i + 1,
                f.end_ms,
                f.start_ms
            ));
        }
        let mut kind = f.kind.clone();
        let members: Vec<usize> = kind.members_mut().into_iter().map(|n| *n).collect();
        if let Some(n) = members.into_iter().find(|n| *n >= nodes && faults::role_name(*n).is_none()) {
            return Err(format!("fault {}: node {n} does not exist in a {nodes}-node cluster", i + 1));
        }
    }
    Ok(faults)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultKind;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("pg{i}")).collect()
    }

    fn crash(node: usize, at: u64) -> Fault {
        Fault { start_ms: at, end_ms: at + 1_000, kind: FaultKind::NodeCrash { node } }
    }

    #[test]
    fn shrinks_to_exactly_the_faults_that_matter() {
        let faults: Vec<Fault> = (0..11).map(|i| crash(i % 3, 10_000 * i as u64)).collect();
        let (a, c) = (faults[2].clone(), faults[9].clone());
        let (min, runs) = shrink(&faults, |fs| fs.contains(&a) && fs.contains(&c));
        assert_eq!(min, vec![a, c]);
        println!("11 faults -> 2 in {runs} runs");
        let (none, _) = shrink(&faults, |_| true);
        assert!(none.is_empty(), "a failure that needs no fault shrinks to none");
        let (all, _) = shrink(&faults, |fs| fs.len() == 11);
        assert_eq!(all, faults, "nothing can be dropped");
    }

    #[test]
    fn kinds_ignore_times_names_and_figures() {
        assert_eq!(violation_kind("t=12.345s split brain: pg1, pg2 all accept writes"), "split-brain");
        assert_eq!(
            violation_kind("t=70.000s liveness: no writable primary 1 ms after faults healed at 5 ms (x)"),
            "no-writable-primary"
        );
        assert_eq!(
            violation_kind("t=1.000s pg3 promoted while etcd's leader key names None"),
            violation_kind("t=9.000s pg1 promoted while etcd's leader key names Some(\"pg2\")")
        );
        assert_eq!(violation_kind("t=1.000s brand new checker saw 3 things"), "brand new checker saw");
    }

    #[test]
    fn fault_files_round_trip_and_bad_ones_are_clear_errors() {
        let faults = vec![crash(1, 40_000), Fault { start_ms: 1, end_ms: 2, kind: FaultKind::EtcdOutage }];
        assert_eq!(parse_faults(&faults_json(&faults), &names(3)).unwrap(), faults);
        let err = parse_faults(&faults_json(&faults), &names(1)).unwrap_err();
        assert!(err.contains("node 1 does not exist in a 1-node cluster"), "{err}");
        assert!(parse_faults("{", &names(3)).unwrap_err().starts_with("not a list of faults"));
        let backwards = r#"[{"start_ms": 5, "end_ms": 1, "kind": "EtcdOutage"}]"#;
        assert!(parse_faults(backwards, &names(3))
            .unwrap_err()
            .contains("ends (1 ms) before it starts (5 ms)"));
        let switch = r#"[{"start_ms": 5, "end_ms": 6, "kind": {"Switchover": {"candidate": 7}}}]"#;
        assert!(parse_faults(switch, &names(3)).is_err());
        // Found by fuzz/ (sim): a cut towards a member that does not exist
        // was accepted, and cut nothing.
        let cut = r#"[{"start_ms": 5, "end_ms": 6, "kind": {"OneWayCut": {"node": 0, "to": 7}}}]"#;
        assert!(parse_faults(cut, &names(3)).unwrap_err().contains("node 7 does not exist"));
    }

    #[test]
    fn a_fault_past_the_end_of_the_run_is_refused() {
        let path = std::env::temp_dir().join(format!("keel-sim-faults-{}.json", std::process::id()));
        std::fs::write(&path, faults_json(&[crash(0, 119_500)])).unwrap();
        assert_eq!(read_faults(&path, &names(3), 120_500).unwrap().len(), 1);
        let err = read_faults(&path, &names(3), 120_000).unwrap_err();
        assert!(err.contains("fault 1 ends at 120500 ms, past the end of the run (120000 ms"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn fault_files_name_members_by_role_or_name_and_refuse_unknown_fields() {
        let text = r#"[{"start_ms": 5, "end_ms": 6, "kind": {"NodeCrash": {"node": "primary"}}},
            {"start_ms": 7, "end_ms": 8, "kind": {"OneWayCut": {"node": "sync_standby", "to": "pg2"}}},
            {"start_ms": 9, "end_ms": 9, "kind": {"Failover": {"candidate": "replica"}}}]"#;
        let faults = parse_faults(text, &names(3)).unwrap();
        assert_eq!(faults[0].kind, FaultKind::NodeCrash { node: faults::PRIMARY });
        assert_eq!(faults[1].kind, FaultKind::OneWayCut { node: faults::SYNC_STANDBY, to: 1 });
        assert_eq!(faults[2].kind, FaultKind::Failover { candidate: faults::REPLICA });
        let written = faults_json(&faults);
        assert!(written.contains(r#""node": "primary""#), "{written}");
        assert_eq!(parse_faults(&written, &names(3)).unwrap(), faults);
        let err = parse_faults(
            r#"[{"start_ms": 5, "end_ms": 6, "kind": {"NodeCrash": {"node": "pg9"}}}]"#,
            &names(3),
        )
        .unwrap_err();
        assert!(err.contains("no member or role is named \"pg9\""), "{err}");
        let extra = r#"[{"start_ms": 5, "end_ms": 6, "kind": {"NodeCrash": {"node": 0, "nod": 1}}}]"#;
        assert!(parse_faults(extra, &names(3)).unwrap_err().contains("unknown field `nod`"));
        let extra = r#"[{"start_ms": 5, "end_ms": 6, "strat_ms": 1, "kind": "EtcdOutage"}]"#;
        assert!(parse_faults(extra, &names(3)).unwrap_err().contains("unknown field `strat_ms`"));
    }
}
