//! A single-member etcd on loopback (Debian's `etcd-server`, or the binary
//! named by `KEEL_ETCD_BIN`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::scratch::{free_port, Scratch};

/// PEM files for a TLS etcd and its clients (see [`make_certs`]).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// A throwaway CA, a server certificate for 127.0.0.1 and a client
/// certificate, made with the openssl command (ECDSA P-256, 2 days).
pub fn make_certs(dir: &Path) -> TlsFiles {
    let run = |args: &[&str]| {
        let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=keel test CA"],
    ]
    .concat());
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ] {
        let (key, csr, pem, extfile) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        std::fs::write(dir.join(&extfile), ext).expect("extension file");
        run(&[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN=keel-{name}")]]
            .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ]);
    }
    TlsFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    }
}

pub struct EtcdServer {
    tls: Option<TlsFiles>,
    child: Option<Child>,
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    dir: Scratch,
    certs: Option<Scratch>,
}

impl EtcdServer {
    /// Starts etcd and waits until it accepts connections (at most 30 s).
    pub fn start() -> EtcdServer {
        EtcdServer::start_with(None)
    }

    /// Starts an etcd that serves clients over TLS and requires a client
    /// certificate signed by the same CA.
    pub fn start_tls() -> EtcdServer {
        let certs = Scratch::new("etcd-certs");
        let files = make_certs(certs.path());
        let mut server = EtcdServer::start_with(Some(files));
        server.certs = Some(certs);
        server
    }

    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    fn start_with(tls: Option<TlsFiles>) -> EtcdServer {
        let dir = Scratch::new("etcd");
        let mut server = EtcdServer {
            tls,
            child: None,
            endpoint: String::new(),
            client_port: 0,
            peer_port: 0,
            dir,
            certs: None,
        };
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
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log file");
        let mut cmd = Command::new(&bin);
        if let Some(tls) = &self.tls {
            cmd.arg("--cert-file").arg(&tls.server_cert).arg("--key-file").arg(&tls.server_key);
            cmd.arg("--trusted-ca-file").arg(&tls.ca).arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", "keel-test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("keel-test={peer}"), "--log-level", "warn"])
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group: a Ctrl-C in the terminal of keel-dev
            // reaches keel-dev, which stops everything in order.
            .process_group(0)
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

    /// The running etcd's PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
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

    /// The sum of etcd's Prometheus samples named `name` whose labels
    /// include every one of `labels` (`grpc_method="Range"`), from its
    /// `/metrics` on the client port (plain HTTP only): how the tests see
    /// which requests reached etcd.
    pub fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        assert!(self.tls.is_none(), "metrics are read over plain HTTP");
        let mut conn = TcpStream::connect(("127.0.0.1", self.client_port)).expect("etcd's client port");
        conn.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").expect("ask for metrics");
        let mut text = String::new();
        conn.read_to_string(&mut text).expect("etcd's metrics");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                (metric == name && labels.iter().all(|label| rest.contains(label))).then_some(value)
            })
            .map(|v| v.parse::<f64>().unwrap_or_else(|_| panic!("metric {name}: bad value {v:?}")))
            .sum()
    }
}

/// Waits (at most 10 s) until `kv`'s copy of its scope
/// (`EtcdKv::keep_scope`) holds every change up to `revision`; any
/// revision below 1 waits for its watch to follow at all.
pub async fn wait_for_scope(kv: &keel_runtime::dcs::etcd::EtcdKv, revision: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while kv.scope_revision() < revision.max(1) {
        assert!(Instant::now() < deadline, "the scope's copy did not reach revision {revision}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}
