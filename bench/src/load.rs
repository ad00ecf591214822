//! A closed-loop HTTP/1.1 load generator: each worker keeps one connection and sends its
//! next request as soon as the previous answer is in.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// One request to repeat.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub method: hyper::Method,
    pub path: String,
    pub body: Bytes,
    /// Sent as an async (Event) invocation.
    pub event_invocation: bool,
}

/// What a run measured.
#[derive(Debug, Default)]
pub struct Stats {
    /// Latency of every answered request.
    pub latencies: Vec<Duration>,
    /// How many answers had each status.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection errors).
    pub failures: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Stats {
    /// The `p`-th percentile latency (0–100).
    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }

    /// Answered requests per second.
    pub fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: Stats) {
        self.latencies.extend(other.latencies);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        self.failures += other.failures;
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request on `sender`; its status, latency and body.
async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
) -> anyhow::Result<(u16, Duration, Bytes)> {
    let mut request = hyper::Request::builder()
        .method(target.method.clone())
        .uri(&target.path)
        .header("host", target.addr.to_string());
    if target.event_invocation {
        request = request.header("x-amz-invocation-type", "Event");
    }
    let request = request.body(Full::new(target.body.clone()))?;
    let begun = Instant::now();
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, begun.elapsed(), body))
}

/// How long a run lasts.
#[derive(Clone, Copy)]
pub enum Length {
    /// This many requests per worker.
    Requests(usize),
    /// Until this much time has passed.
    Time(Duration),
}

/// Runs `concurrency` workers against `target` for `length`.
pub async fn run(target: &Target, concurrency: usize, length: Length) -> anyhow::Result<Stats> {
    let begun = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let target = target.clone();
        workers.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let mut sender = match connect(target.addr).await {
                Ok(s) => s,
                Err(_) => {
                    stats.failures += 1;
                    return stats;
                }
            };
            let mut done = 0usize;
            loop {
                match length {
                    Length::Requests(n) if done >= n => break,
                    Length::Time(d) if begun.elapsed() >= d => break,
                    _ => {}
                }
                done += 1;
                match send(&mut sender, &target).await {
                    Ok((status, latency, _)) => {
                        stats.latencies.push(latency);
                        *stats.statuses.entry(status).or_default() += 1;
                    }
                    Err(_) => {
                        stats.failures += 1;
                        match connect(target.addr).await {
                            Ok(s) => sender = s,
                            Err(_) => break,
                        }
                    }
                }
            }
            stats
        }));
    }
    let mut total = Stats::default();
    for worker in workers {
        total.merge(worker.await?);
    }
    total.elapsed = begun.elapsed();
    Ok(total)
}

/// Sends one request on a fresh connection.
pub async fn once(target: &Target) -> anyhow::Result<(u16, Duration, Bytes)> {
    let mut sender = connect(target.addr).await?;
    send(&mut sender, target).await
}
