//! Accepting connections: HTTP/1.1 with keep-alive and upgrades (for WebSocket sync), TCP_NODELAY,
//! and graceful shutdown (stop accepting, let in-flight requests finish within a grace period).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::error::ApiError;
use crate::{route, AppState, Surface};

/// How long connections get to finish their in-flight requests after shutdown starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GracePeriod(pub Duration);

impl Default for GracePeriod {
    fn default() -> Self {
        GracePeriod(Duration::from_secs(10))
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
                Ok((stream, _peer)) => {
                    // Small JSON responses must not wait for Nagle.
                    let _ = stream.set_nodelay(true);
                    let state = state.clone();
                    let stop = stop_rx.clone();
                    let alive = alive_tx.clone();
                    tokio::spawn(async move {
                        serve_connection(stream, surface, state, stop).await;
                        drop(alive);
                    });
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

async fn serve_connection(
    stream: tokio::net::TcpStream,
    surface: Surface,
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle_logged(state, surface, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
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
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic".to_string());
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
