//! `keelctl`: operate a keel (or Patroni) cluster, as `patronictl` does:
//! `list`, `topology`, `history`, `show-config`, `edit-config`, `pause`,
//! `resume`, `switchover`, `failover`, `restart`, `reload`, `reinit`, `remove`.
//!
//! Errors are one line on stderr (`keelctl: ...`) and exit code 1; usage
//! errors exit 2.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use keel_runtime::agent::environment;
use keel_runtime::ctl::{self, Cli, Console};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("keelctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let (mut input, mut out, mut err) = (stdin.lock(), stdout.lock(), stderr.lock());
    let mut console = Console::new(&mut input, &mut out, &mut err);
    match runtime.block_on(ctl::run(cli, &environment(), &mut console)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The console's borrow of stderr ended with the command.
            let _ = writeln!(err, "keelctl: {e}");
            ExitCode::FAILURE
        }
    }
}
