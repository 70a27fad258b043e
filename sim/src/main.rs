//! `keel-sim`: runs simulated keel clusters from seeds and reports what the
//! checkers found. A failing seed prints the one command that replays it.
//!
//! Built with `--cfg madsim` (scripts/sim), every node runs keel-runtime's
//! agent loop under madsim (`keel_sim::agents`); a normal build runs the
//! core-level simulator (`keel_sim::cluster`), which steps keel-core alone
//! and is the fast property harness.
//!
//! Exit codes: 0 all runs clean, 2 a safety (correctness) violation, 3 a
//! liveness violation, 4 an engine invariant broke (a panic in keel-core).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use keel_sim::{Outcome, SimConfig};

#[derive(Parser)]
#[command(name = "keel-sim", about = "Deterministic failure drills for keel clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed, or a batch of seeds, and check every run.
    Run {
        /// Run exactly this seed (and print its fault schedule).
        #[arg(long, conflicts_with_all = ["seeds", "from"])]
        seed: Option<u64>,
        /// How many seeds to run.
        #[arg(long, default_value_t = 1)]
        seeds: u64,
        /// The first seed of a batch.
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Database nodes in the cluster.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
        nodes: u64,
        /// Simulated seconds per run.
        #[arg(long = "duration-s", default_value_t = 600, value_parser = clap::value_parser!(u64).range(120..=86_400))]
        duration_s: u64,
        /// No faults: a healthy cluster must never change leader.
        #[arg(long)]
        no_faults: bool,
        /// A named failure drill instead of random faults (madsim build;
        /// `--scenario list` lists them).
        #[arg(long, conflicts_with = "no_faults")]
        scenario: Option<String>,
        /// Print every decision and fault (one seed).
        #[arg(long, requires = "seed")]
        verbose: bool,
        /// Write this node's trace (JSON lines keel-core replays) to FILE.
        #[arg(long, requires_all = ["seed", "trace"], value_name = "NODE")]
        trace_node: Option<String>,
        /// Where to write the trace of --trace-node.
        #[arg(long, requires = "trace_node", value_name = "FILE")]
        trace: Option<std::path::PathBuf>,
        /// Start the trace at this simulated second.
        #[arg(long, default_value_t = 0)]
        trace_from_s: u64,
        /// Carry out exactly these faults (a JSON list, as `shrink` writes)
        /// instead of the seed's schedule (madsim build).
        #[arg(long, requires = "seed", conflicts_with_all = ["no_faults", "scenario"], value_name = "FILE")]
        faults: Option<std::path::PathBuf>,
    },
    /// Run one seed (madsim build) and write its event trace and timeline.
    Replay {
        #[command(flatten)]
        run: keel_sim::replay::SeedArgs,
        /// Write the event trace (JSON lines) to FILE and print its hash.
        #[arg(long, value_name = "FILE")]
        trace: Option<std::path::PathBuf>,
        /// Write the run's timeline to FILE (one self-contained HTML page).
        #[arg(long, value_name = "FILE.html")]
        timeline: Option<std::path::PathBuf>,
    },
    /// Reduce a failing seed's fault schedule to the fewest faults that
    /// still fail with the same kind of violation (madsim build).
    Shrink {
        #[command(flatten)]
        run: keel_sim::replay::SeedArgs,
        /// Where to write the minimal schedule (default: seed-S-shrunk.json).
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let Command::Run {
        seed,
        seeds,
        from,
        nodes,
        duration_s,
        no_faults,
        scenario,
        verbose,
        trace_node,
        trace,
        trace_from_s,
        faults,
    } = command
    else {
        return match command {
            Command::Replay { run, trace, timeline } => keel_sim::replay::replay(&run, trace, timeline),
            Command::Shrink { run, out } => keel_sim::replay::shrink(&run, out),
            Command::Run { .. } => unreachable!("handled above"),
        };
    };
    if !cfg!(madsim) && faults.is_some() {
        eprintln!("keel-sim: --faults runs in the madsim simulator: scripts/sim run --seed S --faults FILE");
        return ExitCode::from(1);
    }
    let faults_path = faults.clone();
    let faults = match faults.map(|path| keel_sim::replay::read_faults(&path, nodes as usize)).transpose() {
        Ok(faults) => faults,
        Err(code) => return code,
    };
    if let Some(name) = &scenario {
        if !cfg!(madsim) {
            eprintln!(
                "keel-sim: named scenarios run in the madsim simulator: scripts/sim run --scenario {name}"
            );
            return ExitCode::from(1);
        }
        let known = keel_sim::scenarios::SCENARIOS.iter().find(|(n, _, _)| n == name);
        if known.is_none() {
            if name != "list" {
                eprintln!("keel-sim: no scenario named {name:?}; these exist:");
            }
            for (n, what, _) in keel_sim::scenarios::SCENARIOS {
                eprintln!("  {n:<22} {what}");
            }
            return ExitCode::from(u8::from(name != "list"));
        }
    }
    let nodes = scenario
        .as_ref()
        .and_then(|name| keel_sim::scenarios::SCENARIOS.iter().find(|(n, _, _)| n == name)?.2)
        .map_or(nodes, |n| n as u64);
    if cfg!(madsim) && trace_node.is_some() {
        eprintln!("keel-sim: --trace-node records keel-core steps: run the core-level simulator (cargo run -p keel-sim)");
        return ExitCode::from(1);
    }
    let traced = trace_node.map(|n| (n, trace_from_s * 1000));
    let (first, count) = match seed {
        Some(s) => (s, 1),
        None => (from, seeds),
    };
    let started = Instant::now();
    // A progress bar for batches, only where someone watches.
    let bar = if count > 1 && std::io::stderr().is_terminal() {
        let style = indicatif::ProgressStyle::with_template(
            "{wide_bar} {pos}/{len} seeds, {msg}, {elapsed_precise} (eta {eta})",
        )
        .expect("a valid template");
        indicatif::ProgressBar::new(count).with_style(style).with_message("0 failed")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut total = Outcome::default();
    let mut worst = 0u8;
    let mut bad = Vec::new();
    for s in first..first.saturating_add(count) {
        let config = SimConfig {
            seed: s,
            nodes: nodes as usize,
            duration_ms: duration_s * 1000,
            faults: !no_faults,
            verbose,
            trace: traced.clone(),
        };
        let outcome = run_seed(&config, scenario.as_deref(), faults.clone());
        if seed.is_some() {
            print_run(&outcome);
        }
        if let Some(path) = &trace {
            let mut text = outcome.trace.join("\n");
            text.push('\n');
            if let Err(e) = std::fs::write(path, text) {
                eprintln!("keel-sim: cannot write the trace to {}: {e}", path.display());
                return ExitCode::from(1);
            }
            println!("trace: {} lines in {}", outcome.trace.len(), path.display());
        }
        let code = exit_code(&outcome, no_faults);
        if code != 0 {
            worst = worst.max(code);
            bad.push((s, outcome.violations.clone()));
        }
        add(&mut total, &outcome);
        if code != 0 {
            bar.set_message(format!("{} failed", bad.len()));
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{count} seed(s) from {first}: {:.0} simulated s in {wall:.2} wall s ({:.0}x), {} failovers, {} switchover requests",
        total.simulated_ms as f64 / 1000.0,
        total.simulated_ms as f64 / 1000.0 / wall.max(1e-9),
        total.failovers,
        total.switchovers_requested,
    );
    let faults: Vec<String> = total.faults.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!("faults: {}", if faults.is_empty() { "none".to_owned() } else { faults.join(", ") });
    println!(
        "writes: {} acknowledged, {} refused or blocked, {} acknowledged but lost where the mode allows it",
        total.writes_acked, total.writes_failed, total.writes_lost_allowed
    );
    println!(
        "pg_rewind: {} failed (WAL recycled past the fork, or not rewindable), {} of those nodes reinitialized",
        total.rewinds_failed, total.reinitialized_after_failed_rewind
    );
    for (s, violations) in &bad {
        println!("seed {s} FAILED:");
        for v in violations.iter().take(5) {
            println!("  {v}");
        }
        let extra = match &scenario {
            Some(name) => format!(" --scenario {name}"),
            None if no_faults => " --no-faults".to_owned(),
            None => faults_path.as_ref().map(|p| format!(" --faults {}", p.display())).unwrap_or_default(),
        };
        println!("  replay: {REPLAY} run --seed {s} --nodes {nodes} --duration-s {duration_s}{extra}");
    }
    println!("{} passed, {} failed", count - bad.len() as u64, bad.len());
    ExitCode::from(worst)
}

#[cfg(madsim)]
const REPLAY: &str = "scripts/sim";
#[cfg(not(madsim))]
const REPLAY: &str = "cargo run --release -p keel-sim --";

#[cfg(madsim)]
fn run_seed(
    config: &SimConfig,
    scenario: Option<&str>,
    faults: Option<Vec<keel_sim::faults::Fault>>,
) -> Outcome {
    let opts = keel_sim::agents::RunOptions { faults, ..Default::default() };
    keel_sim::agents::run_with(
        &keel_sim::agents::AgentSimConfig {
            seed: config.seed,
            nodes: config.nodes,
            duration_ms: config.duration_ms,
            faults: config.faults,
            verbose: config.verbose,
            scenario: scenario.map(str::to_owned),
        },
        &opts,
    )
}

#[cfg(not(madsim))]
fn run_seed(
    config: &SimConfig,
    _scenario: Option<&str>,
    _faults: Option<Vec<keel_sim::faults::Fault>>,
) -> Outcome {
    keel_sim::run(config)
}

fn print_run(o: &Outcome) {
    println!("seed {} ({} replication), fault schedule:", o.seed, o.sync_mode);
    for f in &o.schedule {
        println!("  {f}");
    }
    println!("trace hash {:016x}, {} engine steps", o.trace_hash, o.steps);
}

fn exit_code(o: &Outcome, no_faults: bool) -> u8 {
    let mut code = 0;
    for v in &o.violations {
        code = code.max(if v.contains("engine invariant") {
            4
        } else if v.contains("liveness") {
            3
        } else {
            2
        });
    }
    if no_faults && o.failovers > 1 {
        code = code.max(3);
    }
    code
}

fn add(total: &mut Outcome, o: &Outcome) {
    total.simulated_ms += o.simulated_ms;
    total.failovers += o.failovers;
    total.switchovers_requested += o.switchovers_requested;
    total.writes_acked += o.writes_acked;
    total.writes_failed += o.writes_failed;
    total.writes_lost_allowed += o.writes_lost_allowed;
    total.rewinds_failed += o.rewinds_failed;
    total.reinitialized_after_failed_rewind += o.reinitialized_after_failed_rewind;
    for (k, v) in &o.faults {
        *total.faults.entry(k).or_default() += v;
    }
}
