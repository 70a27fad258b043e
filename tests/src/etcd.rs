//! A single-member etcd on loopback (Debian's `etcd-server`, or the binary
//! named by `KEEL_ETCD_BIN`).

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scratch::{free_port, Scratch};

pub struct EtcdServer {
    child: Option<Child>,
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    dir: Scratch,
}

impl EtcdServer {
    /// Starts etcd and waits until it accepts connections (at most 30 s).
    pub fn start() -> EtcdServer {
        let dir = Scratch::new("etcd");
        let mut server =
            EtcdServer { child: None, endpoint: String::new(), client_port: 0, peer_port: 0, dir };
        for _ in 0..5 {
            server.client_port = free_port();
            server.peer_port = free_port();
            if server.spawn() {
                return server;
            }
        }
        panic!("etcd did not start on loopback after 5 attempts");
    }

    fn spawn(&mut self) -> bool {
        let bin = std::env::var("KEEL_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log file");
        let child = Command::new(&bin)
            .args(["--name", "keel-test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("keel-test={peer}"), "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {bin} (install etcd-server): {e}"));
        self.child = Some(child);
        self.endpoint = client;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return false;
            }
            if TcpStream::connect(("127.0.0.1", self.client_port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        false
    }

    /// Stops etcd (SIGKILL, by PID) and waits for it; an outage.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports and data (the end of an outage).
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.spawn(), "etcd did not come back on port {}", self.client_port);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
