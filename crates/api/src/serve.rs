//! The connection loop of the public address: HTTP/1.1 over hyper, with a deadline for
//! each request head, caps on open connections, in all and per client address (one over
//! either is answered 503 and closed, never queued) and graceful shutdown (stop accepting,
//! let in-flight requests finish).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower_service::Service;

/// What one client connection may hold.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest a client may take to send a request's head; an idle keep-alive connection
    /// is closed after it too (hyper times the wait for the next head from its start).
    pub header_read_timeout: Duration,
    /// Most connections open at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Most connections open at once from one client address, so one client cannot take
    /// every slot (behind a proxy, every client has the proxy's address: raise it there).
    pub max_connections_per_client: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_client: 256,
        }
    }
}

/// Open connections per client address.
#[derive(Debug, Default)]
struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One open connection counted against its client's address until dropped.
struct ClientSlot {
    clients: Arc<PerClient>,
    address: IpAddr,
}

impl PerClient {
    /// A slot for a connection from `address`, if it has fewer than `max` open.
    fn take(self: &Arc<Self>, address: IpAddr, max: usize) -> Option<ClientSlot> {
        let mut open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = open.entry(address).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: self.clone(),
            address,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = match self.clients.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = open.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.address);
            }
        }
    }
}

/// Most refusals being written at once; past it a connection over the cap is just closed.
const REFUSALS_MAX: usize = 64;

/// How long a refusal may take to write and wait for the client to read it.
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and returns
/// once every open connection has finished its in-flight request (bound that wait from
/// outside). Handlers see the peer as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let clients = Arc::new(PerClient::default());
    let refusing = Arc::new(Semaphore::new(REFUSALS_MAX));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or similar: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let admitted = clients
            .take(peer.ip(), limits.max_connections_per_client)
            .ok_or(Over::Client)
            .and_then(|slot| {
                let permit = open.clone().try_acquire_owned().map_err(|_| Over::All)?;
                Ok((slot, permit))
            });
        let (slot, permit) = match admitted {
            Ok(admitted) => admitted,
            Err(over) => {
                tracing::debug!(%peer, ?over, "connection over its cap refused");
                if let Ok(writing) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REFUSAL_TIME, refuse(tcp, over, limits)).await;
                        drop(writing);
                    });
                }
                continue;
            }
        };
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(Body::new);
            request.extensions_mut().insert(ConnectInfo(peer));
            let mut app = app.clone();
            async move { app.call(request).await }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(tcp), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Which cap a connection is over.
#[derive(Debug, Clone, Copy)]
enum Over {
    /// `--max-connections`.
    All,
    /// `--max-connections-per-client`.
    Client,
}

/// Answers a connection over a cap with a 503 (which clients retry) and closes it,
/// reading what the client sent meanwhile so that the close does not reset the answer.
async fn refuse(mut tcp: TcpStream, over: Over, limits: ConnectionLimits) {
    let message = match over {
        Over::All => format!(
            "The server has {} connections open, its limit (--max-connections): retry shortly.",
            limits.max_connections
        ),
        Over::Client => format!(
            "Your address has {} connections open, the limit for one client (--max-connections-per-client): close some, or retry shortly.",
            limits.max_connections_per_client
        ),
    };
    let body = format!("{{\"Type\":\"Service\",\"Message\":\"{message}\"}}");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nx-amzn-errortype: ServiceException\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    if tcp.write_all(answer.as_bytes()).await.is_err() || tcp.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    while matches!(tcp.read(&mut sink).await, Ok(n) if n > 0) {}
}
