//! `/api/<version>/sync` and `/api/sync`: upgrade to a WebSocket and hand the socket to the sync
//! crate; `/api/sync_metrics` (admin) reports its counters.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use http::{header, HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tickethub_runtime::Identity;
use tickethub_sync::{SyncAuth, SyncHub, TokenType};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument as _;

use crate::credentials::{require_admin, Authenticator};
use crate::error::{json_response, ApiError, ErrorCode};
use crate::serve::ConnectionSlot;
use crate::{AppState, ResponseBody};

/// Lets sync sessions authenticate with the same verifier and admin key as `/api/*`.
pub(crate) struct SocketAuth(pub Arc<dyn Authenticator>);

impl SyncAuth for SocketAuth {
    fn authenticate<'a>(
        &'a self,
        token_type: TokenType,
        value: Option<&'a str>,
        impersonating: Option<&'a serde_json::Value>,
    ) -> crate::BoxFuture<'a, Result<Identity, String>> {
        Box::pin(async move {
            match (token_type, value) {
                (TokenType::None, _) => Ok(Identity::Anonymous),
                (_, None) => Err("The Authenticate message carries no token.".to_string()),
                (TokenType::Admin, Some(key)) => {
                    if !self.0.is_admin_key(key) {
                        return Err("The admin key is not valid for this deployment.".to_string());
                    }
                    match impersonating {
                        // `run --watch --identity`: the admin subscribes as that user.
                        Some(json) => crate::credentials::acting_as(json.clone())
                            .map(Identity::User)
                            .ok_or_else(|| {
                                "`impersonating` must be a user identity object (subject, issuer, ...)."
                                    .to_string()
                            }),
                        None => Ok(Identity::Admin),
                    }
                }
                (TokenType::User, Some(token)) => self
                    .0
                    .verify_token(token)
                    .await
                    .map(Identity::User)
                    .map_err(|failure| failure.message),
            }
        })
    }
}

/// Answer the upgrade request with 101 and serve the socket once hyper hands it over.
pub(crate) fn upgrade(
    state: &Arc<AppState>,
    mut request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let headers = request.headers();
    let wants_websocket = header_has_token(headers, header::UPGRADE, "websocket")
        && header_has_token(headers, header::CONNECTION, "upgrade");
    let key = headers.get(header::SEC_WEBSOCKET_KEY);
    let (true, Some(key)) = (wants_websocket, key) else {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "The sync endpoint speaks WebSocket: send an HTTP/1.1 Upgrade request.",
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    let hub = state.sync.clone();
    // A frame over this is refused from its header alone (tungstenite checks the declared length
    // before reading the payload), so a 100 MB frame is never buffered; the session answers it
    // with close code 1009.
    let max_message_bytes = hub.options().max_message_bytes;
    // The socket outlives the HTTP connection's task: it keeps the connection's place under
    // the cap, and its span.
    let slot = request.extensions().get::<ConnectionSlot>().cloned();
    let on_upgrade = hyper::upgrade::on(&mut request);
    let task = async move {
        let _slot = slot;
        match on_upgrade.await {
            Ok(upgraded) => {
                let config = WebSocketConfig {
                    max_message_size: Some(max_message_bytes),
                    max_frame_size: Some(max_message_bytes),
                    ..WebSocketConfig::default()
                };
                let socket = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await;
                tickethub_sync::serve(hub, socket).await;
            }
            Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(ResponseBody::default())
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InternalServerError,
                "Could not build the upgrade response.",
            )
        })
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `GET /api/sync_metrics` with the admin key: the hub's counters as JSON.
pub(crate) async fn metrics(
    state: &Arc<AppState>,
    request: &Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    require_admin(
        request.headers(),
        state.authenticator.as_ref(),
        "Sync metrics need the admin key.",
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        metrics_json(&state.sync).to_string().into_bytes(),
    ))
}

fn metrics_json(hub: &SyncHub) -> serde_json::Value {
    serde_json::json!({
        "queryExecutions": hub.metrics.query_executions.load(Ordering::Relaxed),
        "connectionsOpen": hub.metrics.connections_open.load(Ordering::Relaxed),
        "transitionsSent": hub.metrics.transitions_sent.load(Ordering::Relaxed),
        "sessionsWoken": hub.metrics.sessions_woken.load(Ordering::Relaxed),
        "commitsDispatched": hub.metrics.commits_dispatched.load(Ordering::Relaxed),
    })
}
