//! keel's failover benchmark (issue 6): real etcd, PostgreSQL 15, three
//! keel agents and HAProxy on loopback; node death, Postgres crash,
//! switchover and idle footprint, each run verified healthy first.
//!
//!     cargo build --release -p keel-runtime --bins
//!     cargo run --release -p keel-tests --bin keel-bench -- \
//!         --profile fast --profile guide --runs 5 --out docs/bench-results.json
//!
//! `--short` is one run of the fast profile with a 10 s footprint window:
//! proof that the benchmark works, for CI. Nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use keel_tests::bench::report::{self, Machine};
use keel_tests::bench::{bench, Plan, Profile, Run};

#[derive(Parser)]
#[command(name = "keel-bench", about = "keel's failover benchmark on real etcd, PostgreSQL and HAProxy")]
struct Args {
    /// `guide` (ttl 30, loop_wait 10, retry_timeout 10) or `fast` (ttl 5,
    /// loop_wait 1, retry_timeout 2); repeat for both.
    #[arg(long = "profile", default_value = "fast")]
    profiles: Vec<String>,
    /// Runs per profile.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Idle window of the footprint measurement, in seconds.
    #[arg(long, default_value_t = 60)]
    footprint_s: u64,
    /// One run of the fast profile, 10 s footprint window.
    #[arg(long)]
    short: bool,
    /// The keelctl that asks for each switchover (`keelctl switchover
    /// --leader … --force`); by default the one beside the agent.
    #[arg(long, value_name = "PATH")]
    keelctl: Option<PathBuf>,
    /// Switch over by writing the failover key in etcd (Patroni's fallback)
    /// instead of running keelctl.
    #[arg(long, conflicts_with = "keelctl")]
    failover_key: bool,
    /// Where to write the raw per-run numbers (JSON).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // The agent beside this binary (`target/<profile>/keel`), unless KEEL_BIN
    // says otherwise; set before any thread starts.
    if std::env::var_os("KEEL_BIN").is_none() {
        if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_owned)) {
            std::env::set_var("KEEL_BIN", dir.join("keel"));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let keel = PathBuf::from(std::env::var_os("KEEL_BIN").unwrap_or_default());
    if !keel.exists() {
        return Err(format!(
            "no keel agent at {}: build it with the same profile (`cargo build [--release] -p keel-runtime --bin keel`) or set KEEL_BIN",
            keel.display()
        ));
    }
    let keelctl =
        (!args.failover_key).then(|| args.keelctl.clone().unwrap_or_else(keel_tests::ctl::keelctl_bin));
    if let Some(keelctl) = keelctl.as_ref().filter(|k| !k.exists()) {
        return Err(format!(
            "no keelctl at {}: build it (`cargo build [--release] -p keel-runtime --bins`), pass --keelctl PATH, or --failover-key",
            keelctl.display()
        ));
    }
    let (profiles, runs, window) = if args.short {
        (vec![Profile::FAST], 1, Duration::from_secs(10))
    } else {
        let profiles = args.profiles.iter().map(|p| Profile::by_name(p)).collect::<Result<Vec<_>, _>>()?;
        if args.runs == 0 {
            return Err("--runs must be at least 1".into());
        }
        (profiles, args.runs, Duration::from_secs(args.footprint_s))
    };
    let pg_bin =
        keel_tests::postgres::pg_ctl(Path::new("/nonexistent"), Path::new("/nonexistent.log")).bin_dir;
    let machine = Machine::now(&pg_bin);
    eprintln!("keel-bench: {machine:?}");
    let started = Instant::now();
    let mut results: Vec<serde_json::Value> = Vec::new();
    let mut failed = Vec::new();
    for profile in profiles {
        eprintln!("keel-bench: profile {} ({runs} runs)", profile.name);
        let plan = Plan { profile, runs, footprint_window: window, keelctl: keelctl.clone() };
        let loadavg_before = report::loadavg();
        let mut done: Vec<Run> = Vec::new();
        let entry = |done: &[Run], error: Option<&str>| {
            serde_json::json!({
                "profile": profile,
                "footprint_window_s": window.as_secs(),
                "loadavg_before": loadavg_before,
                "loadavg_after": report::loadavg(),
                "runs": done,
                "error": error,
            })
        };
        let outcome = bench(&plan, |run| {
            done.push(run.clone());
            let mut partial = results.clone();
            partial.push(entry(&done, None));
            save(args.out.as_deref(), &machine, &partial);
        })
        .await;
        let error = outcome.as_ref().err().cloned();
        results.push(entry(&done, error.as_deref()));
        save(args.out.as_deref(), &machine, &results);
        println!(
            "\nprofile {} (ttl {} s, loop_wait {} s, retry_timeout {} s), synchronous_mode on, {} run(s), load {} → {}\n",
            profile.name,
            profile.ttl_s,
            profile.loop_wait_s,
            profile.retry_timeout_s,
            done.len(),
            loadavg_before,
            report::loadavg()
        );
        println!("{}", report::table(&report::rows(&profile, &done)));
        if let Some(e) = error {
            eprintln!("keel-bench: profile {} stopped: {e}", profile.name);
            failed.push(profile.name);
        }
    }
    println!(
        "machine: {} cpus ({}), kernel {}; {}; {}; {}; keel {}; took {:.0} s",
        machine.cpus,
        machine.cpu_model,
        machine.kernel,
        machine.postgres,
        machine.etcd,
        machine.haproxy,
        machine.keel_rev,
        started.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("profiles that did not finish: {failed:?}"))
    }
}

fn save(out: Option<&Path>, machine: &Machine, profiles: &[serde_json::Value]) {
    let Some(out) = out else { return };
    let json = serde_json::json!({ "machine": machine, "profiles": profiles });
    let text = serde_json::to_string_pretty(&json).expect("JSON of plain values");
    if let Err(e) = std::fs::write(out, text + "\n") {
        eprintln!("keel-bench: writing {}: {e}", out.display());
    }
}
