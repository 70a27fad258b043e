//! `keel-sim replay` and `keel-sim shrink`: one seed of the madsim
//! simulator, traced (`trace`), drawn (`timeline`) or with its fault
//! schedule reduced (`shrink`). A normal build says where they run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::faults::Fault;

/// The run `replay` and `shrink` work on.
#[derive(clap::Args, Clone, Debug)]
pub struct SeedArgs {
    /// The seed.
    #[arg(long)]
    pub seed: u64,
    /// Database nodes in the cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    pub nodes: u64,
    /// Simulated seconds.
    #[arg(long = "duration-s", default_value_t = 600, value_parser = clap::value_parser!(u64).range(120..=86_400))]
    pub duration_s: u64,
    /// These faults (a JSON list, as `shrink` writes) instead of the seed's
    /// schedule.
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// A named failure drill (`run --scenario list`) instead of the seed's
    /// random faults; it sets the number of nodes where it needs one.
    #[arg(long, value_name = "NAME")]
    pub scenario: Option<String>,
}

impl SeedArgs {
    /// The command line of these arguments, after the subcommand.
    fn args(&self, faults: Option<&Path>) -> String {
        let mut line =
            format!("--seed {} --nodes {} --duration-s {}", self.seed, self.nodes, self.duration_s);
        if let Some(name) = &self.scenario {
            line.push_str(&format!(" --scenario {name}"));
        }
        if let Some(path) = faults.or(self.faults.as_deref()) {
            line.push_str(&format!(" --faults {}", path.display()));
        }
        line
    }

    /// The number of nodes: the scenario's, if it needs a number, else
    /// `--nodes`. An unknown scenario is an error (exit code 1).
    #[cfg(madsim)]
    fn node_count(&self) -> Result<usize, ExitCode> {
        let Some(name) = &self.scenario else {
            return Ok(self.nodes as usize);
        };
        match crate::scenarios::SCENARIOS.iter().find(|(n, _, _)| n == name) {
            Some((_, _, nodes)) => Ok(nodes.unwrap_or(self.nodes as usize)),
            None => {
                eprintln!("keel-sim: no scenario named {name:?} (run --scenario list lists them)");
                Err(ExitCode::from(1))
            }
        }
    }
}

/// Reads a `--faults` file, or says why not (exit code 1).
pub fn read_faults(path: &Path, nodes: usize) -> Result<Vec<Fault>, ExitCode> {
    crate::shrink::read_faults(path, nodes).map_err(|e| {
        eprintln!("keel-sim: {e}");
        ExitCode::from(1)
    })
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

    use super::{read_faults, SeedArgs};
    use crate::agents::{run_with, AgentSimConfig, RunOptions};
    use crate::cluster::Outcome;
    use crate::shrink::{fails_with, faults_json, target_kind};
    use crate::trace;

    /// The run's configuration and options.
    fn prepare(args: &SeedArgs, record: bool) -> Result<(AgentSimConfig, RunOptions), ExitCode> {
        let nodes = args.node_count()?;
        let faults = args.faults.as_deref().map(|p| read_faults(p, nodes)).transpose()?;
        let config = AgentSimConfig {
            seed: args.seed,
            nodes,
            duration_ms: args.duration_s * 1000,
            faults: true,
            verbose: false,
            scenario: args.scenario.clone(),
        };
        Ok((config, RunOptions { record, faults, ..RunOptions::default() }))
    }

    fn verdict(o: &Outcome) -> u8 {
        if o.violations.is_empty() {
            0
        } else if o.violations.iter().all(|v| v.contains("liveness")) {
            3
        } else {
            2
        }
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
        ExitCode::from(verdict(&outcome))
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
