//! Running the `keelctl` binary against a test cluster, as an operator
//! would: its exit code, stdout and stderr, with prompts answered from a
//! string.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::cluster::keel_bin;

/// `KEELCTL_BIN`, else `keelctl` beside the agent binary ([`keel_bin`]),
/// where `cargo build -p keel-runtime --bins` puts it.
pub fn keelctl_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KEELCTL_BIN") {
        let bin = PathBuf::from(bin);
        return std::path::absolute(&bin).unwrap_or(bin);
    }
    keel_bin().with_file_name("keelctl")
}

#[derive(Clone, Debug)]
pub struct CtlOutput {
    /// `None`: killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// stdout, after checking that the command succeeded.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "keelctl failed:\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        &self.stdout
    }
}

/// Runs `keelctl <args>` with `input` on stdin, off the async runtime's
/// threads (it may wait for the cluster for a while).
pub async fn keelctl(args: &[&str], input: &str) -> CtlOutput {
    let bin = keelctl_bin();
    assert!(
        bin.exists(),
        "no keelctl at {}: build it (`cargo build -p keel-runtime --bins`) or set KEELCTL_BIN",
        bin.display()
    );
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let input = input.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(&bin)
            .args(&args)
            .env_remove("PATRONICTL_CONFIG_FILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        if let Some(mut stdin) = child.stdin.take() {
            // A command that asks nothing may exit before reading: ignore EPIPE.
            let _ = stdin.write_all(input.as_bytes());
        }
        let output = child.wait_with_output().expect("keelctl's output");
        CtlOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    })
    .await
    .expect("the keelctl task")
}
