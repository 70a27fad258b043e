//! A TCP proxy between one agent and etcd, which a test can cut: the
//! partition "this node cannot reach etcd" while everything else can.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Forwards every connection on `127.0.0.1:port` to `upstream`. While
/// cut, it drops every open connection and closes new ones as soon as
/// they are accepted (the client sees a reset or an immediate EOF, as
/// from a refusing host). Runs on the tokio runtime that created it;
/// dropping it stops it.
pub struct EtcdProxy {
    pub port: u16,
    cut: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl EtcdProxy {
    pub async fn start(upstream: SocketAddr) -> EtcdProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the etcd proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (cut, cut_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, upstream, cut_rx));
        EtcdProxy { port, cut, accept }
    }

    /// Drops every connection and refuses new ones until [`EtcdProxy::heal`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for EtcdProxy {
    fn drop(&mut self) {
        // Connection tasks end when the sender goes (their `changed()`
        // fails); the accept loop is aborted.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, cut: watch::Receiver<bool>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of file descriptors, say: do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        if *cut.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, upstream, cut.clone()));
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = cut.wait_for(|cut| *cut) => {}
    }
    // Both sockets close here.
}
