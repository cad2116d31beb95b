//! Serving HTTP/1.1 (storage's media and bundle URLs, the admin port) with bounds a hostile
//! client cannot get around. `axum::serve` sets no timer, so a client that opens a connection
//! and trickles its request head (slow-loris) holds it forever, and it accepts without limit.
//! Here a request head must arrive within [`HttpLimits::header_read_timeout`] (idle keep-alive
//! connections included), and at most [`HttpLimits::max_connections`] connections are open;
//! beyond that, new connections wait in the kernel's backlog until one closes.
//!
//! Every connection is set `TCP_NODELAY` ([`NoDelay`]): a response whose body comes after its
//! head in a second small write (a byte range of a segment read from object storage) would
//! otherwise wait for the client's delayed ACK, 40 ms on Linux, on every request.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;

/// Bounds of an HTTP listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time for a client to send a whole request head, counted from the connection's start
    /// or the end of its previous response.
    pub header_read_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// How long a shutdown waits for requests in flight (e.g. a segment download).
    pub drain_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 2048,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// A connection that can send small writes at once (`TCP_NODELAY`, Nagle's algorithm off).
pub trait NoDelay {
    fn set_nodelay(&self) -> std::io::Result<()>;
}

impl NoDelay for tokio::net::TcpStream {
    fn set_nodelay(&self) -> std::io::Result<()> {
        tokio::net::TcpStream::set_nodelay(self, true)
    }
}

impl NoDelay for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn set_nodelay(&self) -> std::io::Result<()> {
        self.get_ref().0.set_nodelay(true)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (up to `drain_timeout`).
pub async fn serve<L>(
    mut listener: L,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send,
    limits: HttpLimits,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
    L::Io: NoDelay,
{
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let io = tokio::select! {
            (io, _addr) = listener.accept() => io,
            () = &mut shutdown => break,
        };
        if let Err(e) = io.set_nodelay() {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let conn = graceful.watch(http1.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            let _slot = permit;
            if let Err(e) = conn.await {
                // Timeouts and resets of hostile or vanished clients: not the server's fault.
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            seconds = limits.drain_timeout.as_secs(),
            "HTTP requests still in flight after the drain timeout; closing them"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio_util::sync::CancellationToken;

    async fn start(limits: HttpLimits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            router,
            stop.clone().cancelled_owned(),
            limits,
        ));
        (addr, stop)
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// Reads until the server closes the connection (or `limit` passes): whether it closed.
    async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Accepts as a `TcpListener` does and keeps a second handle of each accepted socket, to
    /// read the options the server set on it.
    struct Probe {
        inner: TcpListener,
        accepted: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    }

    impl axum::serve::Listener for Probe {
        type Io = TcpStream;
        type Addr = std::net::SocketAddr;

        async fn accept(&mut self) -> (TcpStream, std::net::SocketAddr) {
            let (s, addr) = self.inner.accept().await.unwrap();
            let s = s.into_std().unwrap();
            self.accepted.lock().unwrap().push(s.try_clone().unwrap());
            (TcpStream::from_std(s).unwrap(), addr)
        }

        fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
            self.inner.local_addr()
        }
    }

    #[tokio::test]
    async fn connections_are_served_without_nagle_delays() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = inner.local_addr().unwrap();
        let accepted = Arc::new(std::sync::Mutex::new(Vec::new()));
        let router = axum::Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            Probe {
                inner,
                accepted: accepted.clone(),
            },
            router,
            stop.clone().cancelled_owned(),
            HttpLimits::default(),
        ));
        assert!(get(addr).await.ends_with("hello"));
        let accepted = accepted.lock().unwrap();
        assert_eq!(accepted.len(), 1);
        assert!(accepted[0].nodelay().unwrap(), "TCP_NODELAY is not set");
        stop.cancel();
    }

    #[tokio::test]
    async fn a_slow_loris_is_cut_off_and_others_are_served_meanwhile() {
        let (addr, stop) = start(HttpLimits {
            header_read_timeout: Duration::from_millis(500),
            ..HttpLimits::default()
        })
        .await;
        let mut loris = TcpStream::connect(addr).await.unwrap();
        loris
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Another client is served while the first stalls.
        assert!(get(addr).await.ends_with("hello"));
        // The stalled head is cut off (generous bound: a loaded CI machine).
        assert!(closed_within(&mut loris, Duration::from_secs(30)).await);
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait_for_a_slot() {
        let (addr, stop) = start(HttpLimits {
            header_read_timeout: Duration::from_millis(800),
            max_connections: 2,
            ..HttpLimits::default()
        })
        .await;
        // Two silent clients take both slots …
        let mut a = TcpStream::connect(addr).await.unwrap();
        let mut b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // … a third is served once their heads time out, not refused and not lost.
        let third = tokio::spawn(get(addr));
        assert!(closed_within(&mut a, Duration::from_secs(30)).await);
        assert!(closed_within(&mut b, Duration::from_secs(30)).await);
        let answer = tokio::time::timeout(Duration::from_secs(30), third)
            .await
            .expect("the third client is served")
            .unwrap();
        assert!(answer.ends_with("hello"), "{answer}");
        stop.cancel();
    }
}
