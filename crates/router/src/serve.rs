//! Accepting connections: HTTP/1.1 with keep-alive and upgrades (for WebSocket sync), TCP_NODELAY,
//! a cap on open connections over both ports ([`ConnectionLimit`]), a deadline for request headers
//! (`ReadTimeouts::header`), a `tracing` span per connection, and graceful shutdown (stop accepting, let in-flight requests finish within a
//! grace period).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument as _;

use crate::error::{ApiError, ErrorCode};
use crate::{route, AppState, Surface};

/// How long connections get to finish their in-flight requests after shutdown starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GracePeriod(pub Duration);

impl Default for GracePeriod {
    fn default() -> Self {
        GracePeriod(Duration::from_secs(10))
    }
}

/// Refusals (503 `TooManyConnections`) being answered at once; past this an over-limit connection
/// is closed without an answer, so a flood costs nothing that grows.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// Longest time a refused connection gets to send its request and read the 503.
const REFUSAL_TIME: Duration = Duration::from_secs(2);

/// The open connections of both ports together, at most `max` (the `MAX_CONNECTIONS` knob unless
/// [`RouterConfig::max_connections`](crate::RouterConfig) says otherwise). Also numbers the
/// connections for their tracing spans.
pub struct ConnectionLimit {
    max: usize,
    open: Arc<Semaphore>,
    refusing: Arc<Semaphore>,
    accepted: AtomicU64,
}

/// A connection's place under the limit, held while the connection (or the WebSocket it was
/// upgraded to) is open. Requests carry a clone in their extensions, so the sync endpoint can keep
/// it for the socket's life.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<OwnedSemaphorePermit>);

impl ConnectionLimit {
    pub fn new(max: usize) -> ConnectionLimit {
        let max = max.max(1);
        ConnectionLimit {
            max,
            open: Arc::new(Semaphore::new(max)),
            refusing: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
            accepted: AtomicU64::new(0),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.max - self.open.available_permits()
    }

    /// [`ConnectionLimit::open`] as a function that can outlive this borrow (health gauges).
    pub(crate) fn open_counter(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let (max, open) = (self.max, self.open.clone());
        move || max - open.available_permits()
    }

    fn try_open(&self) -> Option<ConnectionSlot> {
        self.open
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|permit| ConnectionSlot(Arc::new(permit)))
    }
}

/// Serve `listener` until `shutdown` resolves, then stop accepting, ask every connection to close
/// after its current request, and wait for them (at most `grace`).
pub async fn serve(
    listener: TcpListener,
    surface: Surface,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()>,
    grace: GracePeriod,
) {
    // Connections watch this to learn that shutdown started.
    let (stop_tx, stop_rx) = watch::channel(false);
    // Each connection holds a sender; `recv` returns `None` once all are gone (mini-redis's trick).
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small JSON responses must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let number = state.connections.accepted.fetch_add(1, Ordering::Relaxed) + 1;
                    // DEBUG: the connection task enters its span on every poll, which at INFO
                    // cost every request; the one INFO-and-above line of a connection's own
                    // (`refuse`) names the peer itself.
                    let span = tracing::debug_span!("connection", %peer, number, surface = ?surface);
                    let Some(slot) = state.connections.try_open() else {
                        refuse(stream, peer, &state.connections, span);
                        continue;
                    };
                    let state = state.clone();
                    let stop = stop_rx.clone();
                    let alive = alive_tx.clone();
                    tokio::spawn(
                        async move {
                            serve_connection(stream, surface, state, stop, slot).await;
                            drop(alive);
                        }
                        .instrument(span),
                    );
                }
                Err(e) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(alive_tx);
    if tokio::time::timeout(grace.0, alive_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "{surface:?} listener: connections still open after the {:?} grace period",
            grace.0
        );
    }
}

/// Answer an over-limit connection's first request with 503 `TooManyConnections` and close it
/// (or close it at once when too many refusals are already being answered).
fn refuse(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    limit: &ConnectionLimit,
    span: tracing::Span,
) {
    let Ok(refusing) = limit.refusing.clone().try_acquire_owned() else {
        return;
    };
    let max = limit.max;
    tokio::spawn(
        async move {
            tracing::warn!(%peer, "refusing a connection: {max} are open, the most allowed");
            let service = service_fn(move |_request| async move {
                Ok::<_, Infallible>(
                    ApiError::new(
                        ErrorCode::TooManyConnections,
                        format!(
                            "The server already has {max} open connections, the most it accepts; try again shortly."
                        ),
                    )
                    .into_response(),
                )
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(false)
                .header_read_timeout(REFUSAL_TIME)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(REFUSAL_TIME, connection).await;
            drop(refusing);
        }
        .instrument(span),
    );
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    surface: Surface,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
    slot: ConnectionSlot,
) {
    let header_timeout = state.config.timeouts.header;
    let service = service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
        let state = state.clone();
        request.extensions_mut().insert(slot.clone());
        async move { Ok::<_, Infallible>(handle_logged(state, surface, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        // A client must finish its headers within this; a slowloris trickle is cut off here.
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_connection_end(result),
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        // Clients hanging up mid-request are routine.
        tracing::debug!("connection ended: {e}");
    }
}

async fn handle_logged(
    state: Arc<AppState>,
    surface: Surface,
    request: http::Request<hyper::body::Incoming>,
) -> http::Response<crate::ResponseBody> {
    // The request line is only copied when the debug line will be written.
    let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        (
            Instant::now(),
            request.method().clone(),
            request.uri().path().to_string(),
        )
    });
    // A panic in a handler must cost one request, not the connection's other requests or a
    // silent hang-up.
    let response = match AssertUnwindSafe(route(state, surface, request))
        .catch_unwind()
        .await
    {
        Ok(response) => response,
        Err(panic) => {
            let what = tickethub_store::panic_message(&*panic);
            ApiError::internal(format_args!("handler panicked: {what}")).into_response()
        }
    };
    if let Some((started, method, path)) = logged {
        tracing::debug!(
            surface = ?surface,
            %method,
            path = %path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "http request"
        );
    }
    response
}
