//! The one load generator every HTTP peer is driven with: N keep-alive HTTP/1.1 connections
//! (hyper client), each sending its next request as soon as the previous answer is read, for a
//! warm-up period and then a fixed measured period. Every measured latency goes into an HDR
//! histogram (microseconds, 3 significant digits).
//!
//! A connection that fails (reset, refused, timed out) is counted as a connection loss and
//! re-opened, so the same loop serves the fault soak, where the server is killed under load.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::net::TcpStream;

/// Longest latency the histogram can hold: one minute, in microseconds.
const MAX_LATENCY_US: u64 = 60_000_000;
/// A request not answered within this is abandoned and its connection re-opened.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before re-connecting after a failed connect, so a dead server is not spun on.
const RECONNECT_PAUSE: Duration = Duration::from_millis(20);
/// How many error texts are kept as examples for the report.
const MAX_ERROR_SAMPLES: usize = 5;

/// What kind of operation a request is; the workload's `check` gets it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Create,
    Read,
    Update,
    Webhook,
}

/// What the generator remembers about a request after sending it.
#[derive(Clone, Debug)]
pub struct OpMeta {
    pub kind: OpKind,
    /// Position in a counted workload (seeding), else 0.
    pub seq: u64,
    /// Remembered when the server acknowledges the request (the fault soak's lost-write check).
    pub ack: Option<String>,
}

pub struct Op {
    pub meta: OpMeta,
    pub request: Request<Full<Bytes>>,
}

/// A response that arrived but is not what the workload expects.
#[derive(Debug)]
pub struct Rejected(pub String);

/// A source of requests and the judge of their answers. Shared by all connections.
pub trait Workload: Send + Sync + 'static {
    /// The next request for connection `worker`, or `None` when a counted workload is done.
    fn next(&self, worker: usize, rng: &mut SmallRng) -> Option<Op>;
    /// Whether the answer is a success for this workload.
    fn check(&self, meta: &OpMeta, status: StatusCode, body: &[u8]) -> Result<(), Rejected>;
}

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub addr: SocketAddr,
    pub connections: usize,
    /// Requests during warm-up are sent and checked but not measured.
    pub warmup: Duration,
    pub measure: Duration,
}

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ErrorCounts {
    /// Connect failures, resets, and timeouts: what a client sees while a server is down.
    pub connection: u64,
    /// Answers with a status or body the workload rejected.
    pub rejected: u64,
    pub samples: Vec<String>,
}

impl ErrorCounts {
    fn merge(&mut self, other: ErrorCounts) {
        self.connection += other.connection;
        self.rejected += other.rejected;
        for s in other.samples {
            if self.samples.len() < MAX_ERROR_SAMPLES {
                self.samples.push(s);
            }
        }
    }
    fn sample(&mut self, text: String) {
        if self.samples.len() < MAX_ERROR_SAMPLES {
            self.samples.push(text);
        }
    }
}

pub struct LoadResult {
    /// Successful requests inside the measured window.
    pub ops: u64,
    pub measured: Duration,
    pub histogram: Histogram<u64>,
    pub errors: ErrorCounts,
    /// `ack` of every acknowledged request (warm-up included).
    pub acked: Vec<String>,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.ops as f64 / self.measured.as_secs_f64().max(1e-9)
    }
    pub fn p50_us(&self) -> u64 {
        self.histogram.value_at_quantile(0.50)
    }
    pub fn p99_us(&self) -> u64 {
        self.histogram.value_at_quantile(0.99)
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Record one latency, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let us = (latency.as_micros() as u64).clamp(1, MAX_LATENCY_US);
    histogram.saturating_record(us);
}

struct WorkerOutput {
    ops: u64,
    histogram: Histogram<u64>,
    errors: ErrorCounts,
    acked: Vec<String>,
}

/// Drive `workload` against `spec.addr` and collect the results. Returns when the measured
/// period is over or every connection's workload ran out of requests.
pub async fn run(spec: &LoadSpec, workload: Arc<dyn Workload>) -> LoadResult {
    let started = Instant::now();
    let measure_from = started + spec.warmup;
    let end = measure_from + spec.measure;
    let mut tasks = Vec::with_capacity(spec.connections);
    for worker in 0..spec.connections.max(1) {
        let workload = workload.clone();
        let addr = spec.addr;
        tasks.push(tokio::spawn(async move {
            drive(worker, addr, workload, measure_from, end).await
        }));
    }
    let mut result = LoadResult {
        ops: 0,
        measured: Duration::ZERO,
        histogram: new_histogram(),
        errors: ErrorCounts::default(),
        acked: Vec::new(),
    };
    for task in tasks {
        let out = task.await.expect("load worker panicked");
        result.ops += out.ops;
        result
            .histogram
            .add(&out.histogram)
            .expect("histograms share bounds");
        result.errors.merge(out.errors);
        result.acked.extend(out.acked);
    }
    // A counted workload may end early; measure only the time actually spent measuring.
    let finished = Instant::now().min(end);
    result.measured = finished.saturating_duration_since(measure_from);
    if result.measured.is_zero() {
        result.measured = finished.saturating_duration_since(started);
    }
    result
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        // The connection ends when the server goes away; the request side sees the error.
        let _ = connection.await;
    });
    Ok(sender)
}

async fn drive(
    worker: usize,
    addr: SocketAddr,
    workload: Arc<dyn Workload>,
    measure_from: Instant,
    end: Instant,
) -> WorkerOutput {
    let mut rng = SmallRng::seed_from_u64(0x9E37_79B9 ^ (worker as u64).wrapping_mul(7919));
    let mut out = WorkerOutput {
        ops: 0,
        histogram: new_histogram(),
        errors: ErrorCounts::default(),
        acked: Vec::new(),
    };
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    while Instant::now() < end {
        let conn = match sender.as_mut() {
            Some(s) => s,
            None => match connect(addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    out.errors.connection += 1;
                    out.errors.sample(e);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
            },
        };
        let Some(op) = workload.next(worker, &mut rng) else {
            break;
        };
        let sent_at = Instant::now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
            conn.ready().await.map_err(|e| format!("ready: {e}"))?;
            let response = conn
                .send_request(op.request)
                .await
                .map_err(|e| format!("send: {e}"))?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, body))
        })
        .await;
        let latency = sent_at.elapsed();
        match answer {
            Ok(Ok((status, body))) => match workload.check(&op.meta, status, &body) {
                Ok(()) => {
                    if sent_at >= measure_from && Instant::now() <= end {
                        out.ops += 1;
                        record(&mut out.histogram, latency);
                    }
                    if let Some(ack) = op.meta.ack {
                        out.acked.push(ack);
                    }
                }
                Err(Rejected(why)) => {
                    out.errors.rejected += 1;
                    out.errors.sample(why);
                }
            },
            Ok(Err(e)) => {
                out.errors.connection += 1;
                out.errors.sample(e);
                sender = None;
            }
            Err(_) => {
                out.errors.connection += 1;
                out.errors.sample("request timed out".into());
                sender = None;
            }
        }
    }
    out
}

/// One request on a fresh connection, for set-up calls and checks outside measured runs.
pub async fn send_once(
    addr: SocketAddr,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), String> {
    let mut sender = connect(addr).await?;
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, sender.send_request(request))
        .await
        .map_err(|_| "request timed out".to_string())?
        .map_err(|e| format!("send: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok((status, body))
}
