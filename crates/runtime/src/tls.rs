//! TLS for the plain-HTTP listeners (storage's playback server), with the process's own
//! certificate (`tls.cert_file`/`tls.key_file`, the one its gRPC listener serves).
//!
//! Guarantees:
//! - handshakes run concurrently in their own tasks, at most [`MAX_HANDSHAKES`] at once and
//!   each for at most [`HANDSHAKE_TIMEOUT`]: a client that opens a connection and says nothing
//!   holds one slot for a while, never the listener;
//! - a failed handshake is logged (at debug: scanners are common) and costs nothing else;
//! - the process's crypto provider (ring) and rustls's safe defaults; no client certificates
//!   (playback URLs carry their own signed grant).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::RuntimeError;
use crate::config::TlsConfig;

/// Handshakes in progress at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 256;
/// Longest a client may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP listener whose connections come out as TLS streams; serve it with `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

/// The rustls server configuration of `tls`'s certificate chain and key.
pub fn server_config(tls: &TlsConfig) -> Result<rustls::ServerConfig, RuntimeError> {
    crate::install_crypto_provider();
    let certs = read_certs(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| RuntimeError::config("tls.key_file", format!("no private key in PEM: {e}")))?;
    rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| RuntimeError::config("tls.cert_file", format!("unusable certificate: {e}")))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, RuntimeError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            RuntimeError::config("tls.cert_file", format!("not a PEM certificate: {e}"))
        })?;
    if certs.is_empty() {
        return Err(RuntimeError::config(
            "tls.cert_file",
            format!("{} holds no certificate", path.display()),
        ));
    }
    Ok(certs)
}

impl TlsListener {
    /// Starts accepting on `tcp` with `tls`'s certificate. Errors name the config key.
    pub fn new(tcp: TcpListener, tls: &TlsConfig) -> Result<Self, RuntimeError> {
        let mut config = server_config(tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let local_addr = tcp.local_addr().map_err(|source| RuntimeError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep listening.
                        tracing::warn!(error = %e, "TLS listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let ready = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = ready.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener {
            ready,
            local_addr,
            acceptor,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The acceptor only stops when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn cert(dir: &Path) -> TlsConfig {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.join("tls.crt"), c.cert.pem()).unwrap();
        std::fs::write(dir.join("tls.key"), c.signing_key.serialize_pem()).unwrap();
        TlsConfig {
            cert_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
            client_ca_file: None,
        }
    }

    /// A silent client does not stop others from connecting, and a plain-HTTP request gets
    /// no answer (it fails the handshake).
    #[tokio::test]
    async fn serves_tls_while_a_client_stalls() {
        let dir = tempfile::tempdir().unwrap();
        let tls = cert(dir.path());
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut listener = TlsListener::new(tcp, &tls).unwrap();
        let addr = axum::serve::Listener::local_addr(&listener).unwrap();

        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();

        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(read_certs(&tls.cert_file).unwrap());
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let dial = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let mut s = connector.connect(name, tcp).await.unwrap();
            s.write_all(b"ping").await.unwrap();
            s.flush().await.unwrap();
            s
        });
        let (mut served, _) = tokio::time::timeout(
            Duration::from_secs(5),
            axum::serve::Listener::accept(&mut listener),
        )
        .await
        .expect("a TLS client is accepted while another stalls");
        let mut buf = [0u8; 4];
        served.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(dial.await.unwrap());
        let mut answer = Vec::new();
        let n = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
            .await
            .map(|r| r.unwrap_or(0))
            .unwrap_or(0);
        assert!(
            !String::from_utf8_lossy(&answer[..n]).contains("HTTP/1.1 200"),
            "plain HTTP was served"
        );
    }

    #[test]
    fn bad_files_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x"), "not pem").unwrap();
        let tls = TlsConfig {
            cert_file: dir.path().join("x"),
            key_file: dir.path().join("x"),
            client_ca_file: None,
        };
        let e = server_config(&tls).unwrap_err().to_string();
        assert!(
            e.contains("tls.cert_file") || e.contains("tls.key_file"),
            "{e}"
        );
    }
}
