//! The benchmark's table (median (min–max) per figure, next to issue 6's
//! target) and the record of the machine it ran on.

use std::fmt::Write as _;
use std::process::Command;

use serde::Serialize;

use super::{Profile, Run};

/// Median, min and max of a figure over the runs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` without values. The median of an even count is the mean of
    /// the two middle values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
        Some(Spread { median, min: v[0], max: v[n - 1] })
    }

    fn show(&self, digits: usize, unit: &str) -> String {
        // No "-0.00": a difference of two equal times.
        let f = |x: f64| {
            let text = format!("{x:.digits$}");
            if text.trim_start_matches('-').chars().all(|c| c == '0' || c == '.') {
                text.trim_start_matches('-').to_owned()
            } else {
                text
            }
        };
        format!("{}{unit} ({}–{})", f(self.median), f(self.min), f(self.max))
    }
}

/// One line of the table.
pub struct Row {
    pub figure: String,
    pub value: String,
    pub target: String,
}

/// The table's rows for one profile's runs.
pub fn rows(profile: &Profile, runs: &[Run]) -> Vec<Row> {
    let mut rows = Vec::new();
    let fast = profile.name == "fast";
    let row = |figure: &str, values: Vec<f64>, digits: usize, unit: &str, target: &str| {
        let value = Spread::of(&values).map_or_else(|| "-".to_owned(), |s| s.show(digits, unit));
        Row { figure: figure.to_owned(), value, target: target.to_owned() }
    };
    let nd = |f: fn(&super::NodeDeath) -> f64| runs.iter().map(|r| f(&r.node_death)).collect::<Vec<_>>();
    let pc = |f: fn(&super::PgCrash) -> f64| runs.iter().map(|r| f(&r.pg_crash)).collect::<Vec<_>>();
    let so = |f: fn(&super::Switchover) -> f64| runs.iter().map(|r| f(&r.switchover)).collect::<Vec<_>>();
    rows.push(row(
        "node death: first write, direct",
        nd(|n| n.first_write_direct_s),
        2,
        " s",
        if fast { "≤ 6 s" } else { "(Patroni 22.2 s)" },
    ));
    rows.push(row(
        "node death: first write, HAProxy",
        nd(|n| n.first_write_haproxy_s),
        2,
        " s",
        "(Patroni 26.6 s)",
    ));
    rows.push(row(
        "node death: HAProxy-only share",
        nd(|n| n.first_write_haproxy_s - n.first_write_direct_s),
        2,
        " s",
        "check timing only (inter 3s, rise 2)",
    ));
    rows.push(row(
        "node death: kill → lease expiry (etcd)",
        nd(|n| n.lease_expired_s),
        2,
        " s",
        &format!("ttl {} s", profile.ttl_s),
    ));
    rows.push(row(
        "node death: lease expiry → new leader key",
        nd(|n| n.expiry_to_new_leader_s),
        2,
        " s",
        "",
    ));
    rows.push(row(
        "node death: lease expiry → first write (engine overhead)",
        nd(|n| n.expiry_to_first_write_s),
        2,
        " s",
        "≤ 0.5 s median, ≤ 1 s max",
    ));
    rows.push(row(
        "node death: lost rows (after recovery / after rejoin)",
        nd(|n| (n.lost_after_recovery + n.lost_after_rejoin) as f64),
        0,
        "",
        "0",
    ));
    rows.push(row(
        "Postgres crash: first write, direct",
        pc(|p| p.first_write_direct_s),
        2,
        " s",
        "≤ 2 s (Patroni 7.8 s)",
    ));
    let phase = |f: fn(&super::pglog::CrashPhases) -> Option<f64>| {
        runs.iter().map(|r| f(&r.pg_crash.phases).unwrap_or(f64::NAN)).collect::<Vec<_>>()
    };
    rows.push(row(
        "Postgres crash: kill → postmaster started again (keel's part)",
        phase(|p| p.started_s),
        2,
        " s",
        "",
    ));
    rows.push(row(
        "Postgres crash: data-directory sync before redo (PostgreSQL)",
        phase(|p| p.sync_s),
        2,
        " s",
        "",
    ));
    rows.push(row("Postgres crash: kill → server ready", phase(|p| p.ready_s), 2, " s", ""));
    rows.push(row("Postgres crash: first write, HAProxy", pc(|p| p.first_write_haproxy_s), 2, " s", ""));
    rows.push(row(
        "Postgres crash: HAProxy-only share",
        pc(|p| p.first_write_haproxy_s - p.first_write_direct_s),
        2,
        " s",
        "check timing only",
    ));
    let in_place = runs.iter().filter(|r| r.pg_crash.outcome == "restarted in place").count();
    rows.push(Row {
        figure: "Postgres crash: restarted in place (not failed over)".into(),
        value: format!("{in_place} of {} runs", runs.len()),
        target: String::new(),
    });
    rows.push(row("Postgres crash: lost rows", pc(|p| p.lost as f64), 0, "", "0"));
    rows.push(row(
        "switchover: longest write gap, direct",
        so(|s| s.longest_gap_direct_s),
        2,
        " s",
        "< 1 s (Patroni 2.46 s)",
    ));
    rows.push(row(
        "switchover: longest write gap, HAProxy",
        so(|s| s.longest_gap_haproxy_s),
        2,
        " s",
        "(Patroni 6.07 s)",
    ));
    rows.push(row(
        "switchover: HAProxy-only share",
        so(|s| s.longest_gap_haproxy_s - s.longest_gap_direct_s),
        2,
        " s",
        "check timing only",
    ));
    rows.push(row("switchover: failed writes, HAProxy", so(|s| s.failed_haproxy as f64), 0, "", ""));
    rows.push(row("switchover: lost rows", so(|s| s.lost as f64), 0, "", "0"));
    // Which way the switchovers were asked for (the failover key, keelctl).
    let method = runs.first().map_or("", |r| r.switchover.method);
    for row in rows.iter_mut().filter(|r| r.figure.starts_with("switchover:")) {
        row.figure = row.figure.replacen("switchover:", &format!("switchover ({method}):"), 1);
    }
    let rss: Vec<f64> =
        runs.iter().flat_map(|r| r.footprint.iter().map(|f| f.rss_kib as f64 / 1024.0)).collect();
    let cpu = |pick: fn(&super::probes::Footprint) -> bool, of: fn(&super::probes::Footprint) -> f64| {
        runs.iter().flat_map(|r| r.footprint.iter().filter(|f| pick(f)).map(of)).collect::<Vec<_>>()
    };
    rows.push(row("footprint: RSS per idle agent", rss, 1, " MiB", "≤ 10 MB (Patroni 47.5 MB)"));
    rows.push(row(
        "footprint: CPU per idle agent",
        cpu(|_| true, |f| f.cpu_percent),
        3,
        " % of a core",
        "≤ 0.05 %",
    ));
    rows.push(row("footprint: CPU, the leader", cpu(|f| f.leader, |f| f.cpu_percent), 3, " % of a core", ""));
    rows.push(row(
        "footprint: CPU, the replicas",
        cpu(|f| !f.leader, |f| f.cpu_percent),
        3,
        " % of a core",
        "",
    ));
    rows.push(row(
        "footprint: CPU per idle agent, utime + stime",
        cpu(|_| true, |f| f.cpu_ticks_percent),
        3,
        " % of a core",
        "ticks: ±0.03 % over 60 s",
    ));
    rows
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from("| figure | median (min–max) | target |\n|---|---|---|\n");
    for row in rows {
        let _ = writeln!(out, "| {} | {} | {} |", row.figure, row.value, row.target);
    }
    out
}

/// Where and with what the benchmark ran.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub loadavg: String,
    pub postgres: String,
    pub etcd: String,
    pub haproxy: String,
    pub keel_rev: String,
}

impl Machine {
    pub fn now(pg_bin_dir: &std::path::Path) -> Machine {
        let first_line = |program: &std::path::Path, args: &[&str]| {
            Command::new(program)
                .args(args)
                .output()
                .map(|o| {
                    let text = if o.stdout.is_empty() { o.stderr } else { o.stdout };
                    String::from_utf8_lossy(&text).lines().next().unwrap_or_default().trim().to_owned()
                })
                .unwrap_or_else(|e| format!("{}: {e}", program.display()))
        };
        let rev = first_line("git".as_ref(), &["rev-parse", "--short", "HEAD"]);
        let dirty = Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .output()
            .is_ok_and(|o| !o.stdout.is_empty());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|c| {
                    c.lines()
                        .find(|l| l.starts_with("model name"))
                        .and_then(|l| l.split_once(':'))
                        .map(|(_, m)| m.trim().to_owned())
                })
                .unwrap_or_default(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            loadavg: loadavg(),
            postgres: first_line(&pg_bin_dir.join("postgres"), &["--version"]),
            etcd: first_line("etcd".as_ref(), &["--version"]),
            haproxy: first_line(&crate::haproxy::haproxy_bin(), &["-v"]),
            keel_rev: if dirty { format!("{rev} (with uncommitted changes)") } else { rev },
        }
    }
}

/// `/proc/loadavg`'s three averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[3.0, 1.0, 2.0]), Some(Spread { median: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]), Some(Spread { median: 2.5, min: 1.0, max: 4.0 }));
        assert_eq!(Spread::of(&[f64::NAN, 1.0]).map(|s| s.median), Some(1.0));
    }
}
