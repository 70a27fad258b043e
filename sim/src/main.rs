//! `keel-sim`: runs simulated keel clusters from seeds and reports what the
//! checkers found. A failing seed prints the one command that replays it.
//!
//! Built with `--cfg madsim` (scripts/sim), every node runs keel-runtime's
//! agent loop under madsim (`keel_sim::agents`); a normal build runs the
//! core-level simulator (`keel_sim::cluster`), which steps keel-core alone
//! and is the fast property harness.
//!
//! Exit codes: 0 all runs clean, 2 a safety (correctness) violation or a
//! bad command line (clap's code; a bad `--set`, `--tag`, `--names` or
//! fault file too), 3 a liveness violation, 4 an engine invariant broke
//! (a panic in keel-core), 5 an assumption the checks rely on broke (a
//! clock beyond `max_clock_drift`): not keel's fault.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use keel_sim::replay::ClusterArgs;
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
        #[command(flatten)]
        cluster: ClusterArgs,
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
    let Command::Run { seed, seeds, from, cluster, verbose, trace_node, trace, trace_from_s } = command
    else {
        return match command {
            Command::Replay { run, trace, timeline } => keel_sim::replay::replay(&run, trace, timeline),
            Command::Shrink { run, out } => keel_sim::replay::shrink(&run, out),
            Command::Run { .. } => unreachable!("handled above"),
        };
    };
    let madsim_only = [
        (cluster.faults.is_some(), "--faults"),
        (!cluster.overrides().is_empty(), "--set, --tag and --names"),
    ];
    if let Some((_, what)) = madsim_only.iter().find(|(given, _)| *given && !cfg!(madsim)) {
        eprintln!("keel-sim: {what} run in the madsim simulator: scripts/sim run ...");
        return ExitCode::from(1);
    }
    if let Some(name) = &cluster.scenario {
        if !cfg!(madsim) {
            eprintln!(
                "keel-sim: named scenarios run in the madsim simulator: scripts/sim run --scenario {name}"
            );
            return ExitCode::from(1);
        }
        if name == "list" || !keel_sim::scenarios::SCENARIOS.iter().any(|(n, _, _)| n == name) {
            if name != "list" {
                eprintln!("keel-sim: no scenario named {name:?}; these exist:");
            }
            for (n, what, _) in keel_sim::scenarios::SCENARIOS {
                eprintln!("  {n:<22} {what}");
            }
            return ExitCode::from(if name == "list" { 0 } else { 2 });
        }
    }
    let duration_ms = cluster.duration_s * 1000;
    let (nodes, faults) = match cluster.node_count().and_then(|n| Ok((n, cluster.read_faults(duration_ms)?)))
    {
        Ok(checked) => checked,
        Err(e) => return keel_sim::replay::usage_error(&e),
    };
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
            nodes,
            duration_ms,
            faults: !cluster.no_faults,
            verbose,
            trace: traced.clone(),
        };
        let outcome = match run_seed(&config, &cluster, faults.clone()) {
            Ok(outcome) => outcome,
            Err(e) => return keel_sim::replay::usage_error(&e),
        };
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
        let mut code = keel_sim::replay::exit_code(&outcome);
        if cluster.no_faults && outcome.failovers > 1 {
            code = code.max(3);
        }
        if code != 0 {
            worst = worst.max(code);
            bad.push((s, outcome.violations.clone(), outcome.settings.clone()));
            bar.set_message(format!("{} failed", bad.len()));
        }
        add(&mut total, &outcome);
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
    for (s, violations, settings) in &bad {
        println!("seed {s} FAILED:");
        for v in violations.iter().take(5) {
            println!("  {v}");
        }
        if !settings.is_empty() {
            println!("  settings: {settings}");
        }
        println!("  replay: {REPLAY} run --seed {s} {}", cluster.flags(None));
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
    cluster: &ClusterArgs,
    faults: Option<Vec<keel_sim::faults::Fault>>,
) -> Result<Outcome, String> {
    let sim = keel_sim::agents::AgentSimConfig {
        seed: config.seed,
        nodes: config.nodes,
        duration_ms: config.duration_ms,
        faults: config.faults,
        verbose: config.verbose,
        scenario: cluster.scenario.clone(),
        settings: cluster.overrides(),
    };
    // The agent's own check of the settings, before the run.
    keel_sim::agents::setup_checked(&sim)?;
    let opts = keel_sim::agents::RunOptions { faults, ..Default::default() };
    Ok(keel_sim::agents::run_with(&sim, &opts))
}

#[cfg(not(madsim))]
fn run_seed(
    config: &SimConfig,
    _cluster: &ClusterArgs,
    _faults: Option<Vec<keel_sim::faults::Fault>>,
) -> Result<Outcome, String> {
    Ok(keel_sim::run(config))
}

fn print_run(o: &Outcome) {
    println!("seed {} ({} replication), fault schedule:", o.seed, o.sync_mode);
    for f in &o.schedule {
        println!("  {f}");
    }
    if !o.settings.is_empty() {
        println!("settings: {}", o.settings);
    }
    // The core-level simulator counts keel-core steps; the agents under
    // madsim step at their own pace, uncounted.
    if cfg!(madsim) {
        println!("trace hash {:016x}", o.trace_hash);
    } else {
        println!("trace hash {:016x}, {} engine steps", o.trace_hash, o.steps);
    }
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
