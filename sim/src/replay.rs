//! `keel-sim replay` and `keel-sim shrink`: one seed of the madsim
//! simulator, traced (`trace`), drawn (`timeline`) or with its fault
//! schedule reduced (`shrink`). A normal build says where they run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cluster::Outcome;
use crate::faults::Fault;
use crate::settings;

/// The cluster and faults of a run: the flags `run`, `replay` and
/// `shrink` share, with the same rules.
#[derive(clap::Args, Clone, Debug)]
pub struct ClusterArgs {
    /// Database nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Simulated seconds per run.
    #[arg(long = "duration-s", default_value_t = 600, value_parser = clap::value_parser!(u64).range(120..=86_400))]
    pub duration_s: u64,
    /// No faults: a healthy cluster must never change leader.
    #[arg(long)]
    pub no_faults: bool,
    /// A named failure drill (`run --scenario list`) instead of the seed's
    /// random faults; it sets the number of nodes where it needs one
    /// (madsim build).
    #[arg(long, value_name = "NAME", conflicts_with = "no_faults")]
    pub scenario: Option<String>,
    /// Carry out exactly these faults (a JSON list, as `shrink` writes)
    /// instead of the seed's schedule (madsim build).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["no_faults", "scenario"])]
    pub faults: Option<PathBuf>,
    /// A dynamic setting over the seed's draw, e.g. `--set ttl=30`
    /// (repeatable; keys: ttl, loop_wait, retry_timeout,
    /// maximum_lag_on_failover, synchronous_mode, synchronous_mode_strict,
    /// synchronous_node_count, failsafe_mode, use_pg_rewind,
    /// primary_start_timeout, check_timeline, max_clock_drift).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = settings::parse_set)]
    pub set: Vec<settings::Setting>,
    /// A member's tag over the seed's draw, e.g. `--tag pg2:nofailover=true`
    /// (repeatable; nofailover, nosync, failover_priority, sync_priority).
    #[arg(long = "tag", value_name = "NODE:KEY=VALUE", value_parser = settings::parse_tag)]
    pub tag: Vec<settings::Tag>,
    /// The members' names (default pg1, pg2, ...); their number is the
    /// number of nodes.
    #[arg(long, value_name = "A,B,C", value_delimiter = ',', value_parser = settings::parse_name, conflicts_with = "nodes")]
    pub names: Option<Vec<String>>,
}

impl ClusterArgs {
    /// The settings over the seed's draws.
    pub fn overrides(&self) -> settings::Overrides {
        settings::Overrides { set: self.set.clone(), tags: self.tag.clone(), names: self.names.clone() }
    }

    /// The number of nodes: the scenario's, if it needs a number, else
    /// `--names`' or `--nodes`. An unknown scenario is an error.
    pub fn node_count(&self) -> Result<usize, String> {
        let given = self.names.as_ref().map_or(self.nodes as usize, Vec::len);
        let Some(name) = &self.scenario else {
            return Ok(given);
        };
        match crate::scenarios::SCENARIOS.iter().find(|(n, _, _)| n == name) {
            Some((_, _, nodes)) => Ok(nodes.unwrap_or(given)),
            None => Err(format!("no scenario named {name:?} (run --scenario list lists them)")),
        }
    }

    /// The `--faults` file's faults, checked against the cluster's members.
    pub fn read_faults(&self, duration_ms: u64) -> Result<Option<Vec<Fault>>, String> {
        let names = self.overrides().member_names(self.node_count()?);
        self.faults.as_deref().map(|p| crate::shrink::read_faults(p, &names, duration_ms)).transpose()
    }

    /// The flags of these arguments, with `faults` in place of `--faults`
    /// when given.
    pub fn flags(&self, faults: Option<&Path>) -> String {
        let mut line = match &self.names {
            Some(_) => format!("--duration-s {}", self.duration_s),
            None => format!("--nodes {} --duration-s {}", self.nodes, self.duration_s),
        };
        if self.no_faults {
            line.push_str(" --no-faults");
        }
        if let Some(name) = &self.scenario {
            line.push_str(&format!(" --scenario {name}"));
        }
        if let Some(path) = faults.or(self.faults.as_deref()) {
            line.push_str(&format!(" --faults {}", path.display()));
        }
        line.push_str(&self.overrides().flags());
        line
    }
}

/// The run `replay` and `shrink` work on.
#[derive(clap::Args, Clone, Debug)]
pub struct SeedArgs {
    /// The seed.
    #[arg(long)]
    pub seed: u64,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

impl SeedArgs {
    /// The command line of these arguments, after the subcommand.
    fn args(&self, faults: Option<&Path>) -> String {
        format!("--seed {} {}", self.seed, self.cluster.flags(faults))
    }
}

/// A run's exit code, from the worst class of its violations: 2 safety,
/// 3 liveness, 4 an engine invariant broke (a panic in keel-core), 5 an
/// assumption the checks rely on broke (not keel's fault).
pub fn exit_code(o: &Outcome) -> u8 {
    o.violations
        .iter()
        .map(|v| {
            if v.contains("engine invariant") {
                4
            } else if v.contains("assumption broken") {
                5
            } else if v.contains("liveness") {
                3
            } else {
                2
            }
        })
        .max()
        .unwrap_or(0)
}

/// A bad command line, settings or fault file: one line, exit code 2 (as
/// clap's own usage errors).
pub fn usage_error(e: &str) -> ExitCode {
    eprintln!("keel-sim: {e}");
    ExitCode::from(2)
}

#[cfg(not(madsim))]
pub fn replay(args: &SeedArgs, _trace: Option<PathBuf>, _timeline: Option<PathBuf>) -> ExitCode {
    eprintln!("keel-sim: replay runs in the madsim simulator: scripts/sim replay {}", args.args(None));
    ExitCode::from(1)
}

#[cfg(not(madsim))]
pub fn shrink(args: &SeedArgs, _out: Option<PathBuf>) -> ExitCode {
    eprintln!("keel-sim: shrink runs in the madsim simulator: scripts/sim shrink {}", args.args(None));
    ExitCode::from(1)
}

#[cfg(madsim)]
pub use sim::{replay, shrink};

#[cfg(madsim)]
mod sim {
    use std::path::PathBuf;
    use std::process::ExitCode;
    use std::time::Instant;

    use super::{usage_error, SeedArgs};
    use crate::agents::{run_with, AgentSimConfig, RunOptions};
    use crate::shrink::{fails_with, faults_json, target_kind};
    use crate::trace;

    /// The run's configuration and options.
    fn prepare(args: &SeedArgs, record: bool) -> Result<(AgentSimConfig, RunOptions), ExitCode> {
        let c = &args.cluster;
        let duration_ms = c.duration_s * 1000;
        let prepared = c.node_count().and_then(|nodes| {
            let faults = c.read_faults(duration_ms)?;
            let config = AgentSimConfig {
                seed: args.seed,
                nodes,
                duration_ms,
                faults: !c.no_faults,
                verbose: false,
                scenario: c.scenario.clone(),
                settings: c.overrides(),
            };
            crate::agents::setup_checked(&config)?;
            Ok((config, RunOptions { record, faults, ..RunOptions::default() }))
        });
        prepared.map_err(|e| usage_error(&e))
    }

    fn write(path: &PathBuf, text: &str) -> Result<(), ExitCode> {
        std::fs::write(path, text).map_err(|e| {
            eprintln!("keel-sim: cannot write {}: {e}", path.display());
            ExitCode::from(1)
        })
    }

    /// Runs the seed with its trace recorded; writes the trace and the
    /// timeline. Exits like `run` (0 clean, 2 safety, 3 liveness).
    pub fn replay(args: &SeedArgs, trace_path: Option<PathBuf>, timeline: Option<PathBuf>) -> ExitCode {
        let (cfg, opts) = match prepare(args, true) {
            Ok(prepared) => prepared,
            Err(code) => return code,
        };
        let outcome = run_with(&cfg, &opts);
        let text = trace::file_text(&outcome.trace);
        println!(
            "seed {}: {} trace events, trace hash {:016x} (event hash {:016x})",
            args.seed,
            outcome.trace.len(),
            trace::hash(text.as_bytes()),
            outcome.trace_hash
        );
        if let Some(path) = &trace_path {
            if let Err(code) = write(path, &text) {
                return code;
            }
            println!("trace: {} ({} bytes)", path.display(), text.len());
        }
        if let Some(path) = &timeline {
            let events = match trace::parse(&text) {
                Ok(events) => events,
                Err(e) => {
                    eprintln!("keel-sim: the trace does not read back: {e}");
                    return ExitCode::from(1);
                }
            };
            let html = crate::timeline::render(&events);
            if let Err(code) = write(path, &html) {
                return code;
            }
            println!("timeline: {} ({} bytes)", path.display(), html.len());
        }
        for v in &outcome.violations {
            println!("  {v}");
        }
        println!("{}", if outcome.violations.is_empty() { "passed" } else { "FAILED" });
        ExitCode::from(super::exit_code(&outcome))
    }

    /// Shrinks the seed's fault schedule; prints the minimal one, writes
    /// it and prints the command that replays it.
    pub fn shrink(args: &SeedArgs, out: Option<PathBuf>) -> ExitCode {
        let (cfg, opts) = match prepare(args, false) {
            Ok(prepared) => prepared,
            Err(code) => return code,
        };
        let started = Instant::now();
        let outcome = run_with(&cfg, &opts);
        let Some(kind) = target_kind(&outcome) else {
            println!("seed {} passes: nothing to shrink", args.seed);
            return ExitCode::from(1);
        };
        println!(
            "seed {} fails ({}) with {} faults; shrinking (same seed, subsets of its faults)",
            args.seed,
            kind,
            outcome.schedule.len()
        );
        let mut last_failure = outcome.violations.first().cloned().unwrap_or_default();
        let (min, runs) = crate::shrink::shrink(&outcome.schedule, |faults| {
            let o = run_with(&cfg, &RunOptions { faults: Some(faults.to_vec()), ..RunOptions::default() });
            let fails = fails_with(&o, &kind);
            eprintln!("  {:>3} faults: {}", faults.len(), if fails { "still fails" } else { "passes" });
            if fails {
                if let Some(v) = o.violations.iter().find(|v| crate::shrink::violation_kind(v) == kind) {
                    last_failure = v.clone();
                }
            }
            fails
        });
        println!(
            "minimal schedule: {} of {} faults ({} runs, {:.1} wall s):",
            min.len(),
            outcome.schedule.len(),
            runs,
            started.elapsed().as_secs_f64()
        );
        for f in &min {
            println!("  {f}");
        }
        println!("it fails with: {last_failure}");
        let path = out.unwrap_or_else(|| PathBuf::from(format!("seed-{}-shrunk.json", args.seed)));
        if let Err(code) = write(&path, &faults_json(&min)) {
            return code;
        }
        println!("replay: scripts/sim run {}", args.args(Some(&path)));
        println!(
            "timeline: scripts/sim replay {} --timeline seed-{}.html",
            args.args(Some(&path)),
            args.seed
        );
        ExitCode::SUCCESS
    }
}
