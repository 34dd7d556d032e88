//! One WebSocket connection: its query set, identity and versions.
//!
//! Two tasks per connection. The session task reads client messages and the hub's wake-ups and
//! decides what to send; the writer task drains a bounded outbox into the socket, sends `Ping`
//! after `ping_after_idle` of silence, and gives up on a client that does not take a message
//! within `send_timeout` (see [`SyncOptions`]). The hub wakes a session only when a commit
//! touched one of its subscriptions, and wake-ups coalesce, so a session that falls behind skips
//! intermediate states and catches up to the latest in one Transition.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickethub_runtime::{CallRequest, Caller, FnError, FunctionKind, Identity, ReadAt};
use tickethub_store::ReadSet;
use tickethub_value::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::hub::{
    QueryError, QueryKey, QueryOutcome, SessionId, SessionSignal, SyncHub, SyncOptions,
};
use crate::protocol::{
    ClientMessage, QueryId, QuerySetModification, ServerMessage, StateModification, StateVersion,
};

/// How long a mutation's response waits for its commit to reach the hub before the Transition.
const COMMIT_VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve one upgraded connection until it closes.
pub async fn serve<S>(hub: Arc<SyncHub>, socket: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    hub.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    let options = *hub.options();
    let (sink, mut incoming) = socket.split();
    let (outbox, outbox_rx) = mpsc::channel(options.outbox_capacity.max(1));
    // How the writer should close the socket when the session ends (default: a plain close).
    let (close_with, close_frame) = oneshot::channel();
    let writer = tokio::spawn(write_loop(sink, outbox_rx, close_frame, options));
    let (id, signal) = hub.open_session();
    let mut too_big = false;
    let mut session = Session {
        hub: hub.clone(),
        outbox,
        version: StateVersion::default(),
        identity: Identity::Anonymous,
        queries: BTreeMap::new(),
        id,
        signal: signal.clone(),
        actions: Arc::new(Semaphore::new(options.max_actions_per_connection)),
    };
    loop {
        let step = tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => session.on_text(&text).await,
                Some(Ok(Message::Binary(_))) => Err(Close::Fatal("binary frames are not part of the protocol".into())),
                Some(Err(WsError::Capacity(too_big))) => Err(Close::TooBig(too_big.to_string())),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(Close::Quietly),
                Some(Ok(_)) => Ok(()),
            },
            () = signal.notify.notified() => session.transition(Change::default()).await,
        };
        match step {
            Ok(()) => {}
            Err(Close::Quietly) => break,
            Err(Close::Fatal(error)) => {
                tracing::debug!(%error, "closing sync connection");
                let _ = session
                    .outbox
                    .send(ServerMessage::FatalError { error })
                    .await;
                break;
            }
            Err(Close::AfterAuthError) => break,
            Err(Close::TooBig(detail)) => {
                too_big = true;
                // The frame's payload was never read; all that is left is to say why we close.
                tracing::info!(%detail, "closing a sync connection that sent an oversized message");
                let _ = close_with.send(CloseFrame {
                    code: CloseCode::Size,
                    reason: format!(
                        "Message too big: a client message may be at most {} bytes.",
                        options.max_message_bytes
                    )
                    .into(),
                });
                break;
            }
        }
    }
    drop(session);
    let sink = writer.await;
    if too_big {
        if let Ok(Ok(mut socket)) = sink.map(|sink| incoming.reunite(sink)) {
            drain_after_close(socket.get_mut()).await;
        }
    }
    hub.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut outbox: mpsc::Receiver<ServerMessage>,
    mut close_frame: oneshot::Receiver<CloseFrame<'static>>,
    options: SyncOptions,
) -> futures_util::stream::SplitSink<WebSocketStream<S>, Message>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = match tokio::time::timeout(options.ping_after_idle, outbox.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_idle) => ServerMessage::Ping,
        };
        let text = match serde_json::to_string(&message) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "could not encode a sync message");
                break;
            }
        };
        match tokio::time::timeout(options.send_timeout, sink.send(Message::text(text))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!("dropping a sync client that stopped reading");
                break;
            }
        }
    }
    let close = async {
        match close_frame.try_recv() {
            Ok(frame) => {
                let _ = sink.send(Message::Close(Some(frame))).await;
                sink.close().await
            }
            Err(_) => sink.close().await,
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
    sink
}

/// Most bytes, and longest time, spent discarding what a client that sent an oversized frame is
/// still sending after our close frame.
const DRAIN_AFTER_CLOSE_BYTES: usize = 128 * 1024 * 1024;
const DRAIN_AFTER_CLOSE_TIME: Duration = Duration::from_secs(2);

/// After refusing an oversized frame the client is usually still sending its payload. Closing the
/// TCP connection with unread data makes the kernel send a reset, and the client may then lose our
/// close frame (it sees 1006 instead of 1009). So read and discard the rest, bounded in bytes and
/// time, at the TCP level (never as a WebSocket message), giving the client time to read the close
/// frame and hang up.
async fn drain_after_close<S: AsyncRead + Unpin>(raw: &mut S) {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 64 * 1024];
    let drain = async {
        let mut seen = 0usize;
        while seen < DRAIN_AFTER_CLOSE_BYTES {
            match raw.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen += n,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_AFTER_CLOSE_TIME, drain).await;
}

enum Close {
    /// The peer went away.
    Quietly,
    /// A protocol violation: tell the client, then close.
    Fatal(String),
    /// The AuthError was sent; close so the client reconnects and re-authenticates.
    AfterAuthError,
    /// A message or frame over `max_message_bytes`: close with 1009 (Message Too Big).
    TooBig(String),
}

struct Subscription {
    /// The query, or why its args were refused (then the refusal is its result, for good).
    query: Result<QueryKey, Arc<QueryOutcome>>,
    last: Option<Arc<QueryOutcome>>,
}

/// What a Transition should cover beyond catching up with commits.
#[derive(Default)]
struct Change {
    added: Vec<QueryId>,
    removed: Vec<QueryId>,
    new_query_set: Option<u32>,
    new_identity: Option<u32>,
    /// Send a Transition even if nothing changed (a mutation's response waits for one).
    always_send: bool,
}

struct Session {
    hub: Arc<SyncHub>,
    outbox: mpsc::Sender<ServerMessage>,
    /// The `endVersion` of the last Transition sent.
    version: StateVersion,
    identity: Identity,
    queries: BTreeMap<QueryId, Subscription>,
    /// This session in the hub's subscription index.
    id: SessionId,
    signal: Arc<SessionSignal>,
    /// One permit per running action.
    actions: Arc<Semaphore>,
}

/// However the connection ends (even when its task is dropped), its subscriptions leave the index.
impl Drop for Session {
    fn drop(&mut self) {
        self.hub.close_session(self.id);
    }
}

impl Session {
    async fn send(&self, message: ServerMessage) -> Result<(), Close> {
        self.outbox.send(message).await.map_err(|_| Close::Quietly)
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Close> {
        let message: ClientMessage = serde_json::from_str(text)
            .map_err(|error| Close::Fatal(format!("Invalid message from the client: {error}")))?;
        match message {
            ClientMessage::Connect {
                session_id,
                connection_count,
                ..
            } => {
                tracing::debug!(%session_id, connection_count, "sync client connected");
                Ok(())
            }
            ClientMessage::ModifyQuerySet {
                base_version,
                new_version,
                modifications,
            } => {
                if base_version != self.version.query_set {
                    return Err(Close::Fatal(format!(
                        "InvalidModifyQuerySet: base version {base_version} does not match the current query set version {}",
                        self.version.query_set
                    )));
                }
                let mut change = Change {
                    new_query_set: Some(new_version),
                    ..Change::default()
                };
                for modification in modifications {
                    match modification {
                        QuerySetModification::Add {
                            query_id,
                            udf_path,
                            args,
                        } => {
                            let limit = self.hub.options().max_queries_per_connection;
                            if !self.queries.contains_key(&query_id) && self.queries.len() >= limit
                            {
                                return Err(Close::Fatal(format!(
                                    "TooManySubscriptions: this connection already has {limit} queries subscribed, the most it may have; remove some before adding more."
                                )));
                            }
                            let query = match decode_args(&args) {
                                Ok(args) => Ok(QueryKey::new(udf_path, args)),
                                Err(refused) => Err(Arc::new(refused.into_outcome(&self.hub))),
                            };
                            self.hub.unregister(self.id, query_id);
                            self.queries
                                .insert(query_id, Subscription { query, last: None });
                            change.added.push(query_id);
                        }
                        QuerySetModification::Remove { query_id } => {
                            self.queries.remove(&query_id);
                            self.hub.unregister(self.id, query_id);
                            change.removed.push(query_id);
                        }
                    }
                }
                self.transition(change).await
            }
            ClientMessage::Mutation {
                request_id,
                udf_path,
                args,
            } => {
                let result = self.call(FunctionKind::Mutation, udf_path, &args).await;
                let committed_at = result.outcome.as_ref().ok().and(result.ts);
                let (success, value, error_data) = response_parts(result.outcome);
                self.send(ServerMessage::MutationResponse {
                    request_id,
                    success,
                    result: value,
                    ts: committed_at,
                    log_lines: result.log_lines,
                    error_data,
                })
                .await?;
                if let Some(ts) = committed_at {
                    // The client resolves the mutation's promise only at a Transition reaching its
                    // ts, and by then every subscription must reflect the write: wait until the
                    // hub has matched the commit against every subscription.
                    self.hub.until_processed(ts, COMMIT_VISIBLE_TIMEOUT).await;
                    self.transition(Change {
                        always_send: true,
                        ..Change::default()
                    })
                    .await?;
                }
                Ok(())
            }
            ClientMessage::Action {
                request_id,
                udf_path,
                args,
            } => {
                // Actions may be slow; they must not hold up this connection's other traffic.
                // They run on their own tasks, at most `max_actions_per_connection` at once.
                let Ok(permit) = self.actions.clone().try_acquire_owned() else {
                    let limit = self.hub.options().max_actions_per_connection;
                    return self
                        .send(ServerMessage::ActionResponse {
                            request_id,
                            success: false,
                            result: serde_json::Value::String(format!(
                                "TooManyConcurrentActions: this connection already has {limit} actions running, the most it may have at once; wait for one to finish before starting another."
                            )),
                            log_lines: Vec::new(),
                            error_data: None,
                        })
                        .await;
                };
                let hub = self.hub.clone();
                let outbox = self.outbox.clone();
                let identity = self.identity.clone();
                tokio::spawn(async move {
                    let result = call(&hub, &identity, FunctionKind::Action, udf_path, &args).await;
                    drop(permit);
                    let (success, value, error_data) = response_parts(result.outcome);
                    let _ = outbox
                        .send(ServerMessage::ActionResponse {
                            request_id,
                            success,
                            result: value,
                            log_lines: result.log_lines,
                            error_data,
                        })
                        .await;
                });
                Ok(())
            }
            ClientMessage::Authenticate {
                token_type,
                value,
                base_version,
                impersonating,
            } => {
                match self
                    .hub
                    .auth()
                    .authenticate(token_type, value.as_deref(), impersonating.as_ref())
                    .await
                {
                    Ok(identity) => {
                        self.identity = identity;
                        let change = Change {
                            new_identity: Some(self.version.identity + 1),
                            ..Change::default()
                        };
                        self.transition(change).await
                    }
                    Err(error) => {
                        self.send(ServerMessage::AuthError {
                            error,
                            base_version,
                            auth_update_attempted: true,
                        })
                        .await?;
                        Err(Close::AfterAuthError)
                    }
                }
            }
            ClientMessage::Event {} => Ok(()),
        }
    }

    async fn call(
        &self,
        kind: FunctionKind,
        path: String,
        args: &[serde_json::Value],
    ) -> tickethub_runtime::CallResult {
        call(&self.hub, &self.identity, kind, path, args).await
    }

    /// Bring the client up to the hub's latest dispatched commit: re-run the subscriptions a
    /// commit touched (all of them when the identity changed or the log no longer reached back),
    /// plus the added ones, and send one Transition with whatever changed.
    async fn transition(&mut self, change: Change) -> Result<(), Close> {
        // Read before taking the marks: every commit up to `processed` has marked us by now.
        let processed = self.hub.processed_ts();
        let dirty = self.signal.take();
        let identity_changed = change.new_identity.is_some();
        let mut to_run: Vec<QueryId> = if identity_changed || dirty.everything {
            self.queries.keys().copied().collect()
        } else {
            dirty
                .queries
                .into_iter()
                .filter(|id| self.queries.contains_key(id))
                .collect()
        };
        for id in &change.added {
            if !to_run.contains(id) {
                to_run.push(*id);
            }
        }

        let mut modifications = Vec::new();
        for id in change.removed {
            if !self.queries.contains_key(&id) {
                modifications.push(StateModification::QueryRemoved { query_id: id });
            }
        }
        for id in to_run {
            let Some(sub) = self.queries.get(&id) else {
                continue;
            };
            let outcome = match &sub.query {
                Ok(query) => {
                    let outcome = self.hub.run_query(query, &self.identity).await;
                    self.hub
                        .register(self.id, id, outcome.read_set.as_ref(), outcome.ts);
                    outcome
                }
                Err(refused) => refused.clone(),
            };
            let unchanged = sub
                .last
                .as_ref()
                .is_some_and(|last| last.same_as_seen_by_client(&outcome));
            if !unchanged {
                modifications.push(modification(id, &outcome));
            }
            if let Some(sub) = self.queries.get_mut(&id) {
                sub.last = Some(outcome);
            }
        }

        let end = StateVersion {
            query_set: change.new_query_set.unwrap_or(self.version.query_set),
            identity: change.new_identity.unwrap_or(self.version.identity),
            ts: self.version.ts.max(processed),
        };
        // A commit that changed none of this client's results is not worth a message: the client
        // needs a newer timestamp only to resolve its own mutations (`always_send`).
        let versions_moved =
            end.query_set != self.version.query_set || end.identity != self.version.identity;
        if modifications.is_empty() && !versions_moved && !change.always_send {
            return Ok(());
        }
        let start = self.version;
        self.version = end;
        self.hub
            .metrics
            .transitions_sent
            .fetch_add(1, Ordering::Relaxed);
        self.send(ServerMessage::Transition {
            start_version: start,
            end_version: end,
            modifications,
        })
        .await
    }
}

async fn call(
    hub: &SyncHub,
    identity: &Identity,
    kind: FunctionKind,
    path: String,
    args: &[serde_json::Value],
) -> tickethub_runtime::CallResult {
    let args = match decode_args(args) {
        Ok(args) => args,
        Err(refused) => {
            return tickethub_runtime::CallResult {
                outcome: Err(FnError::msg(refused.to_string())),
                log_lines: Vec::new(),
                ts: None,
                read_set: None,
            }
        }
    };
    hub.runtime()
        .call(CallRequest {
            path,
            args,
            expected_kind: Some(kind),
            caller: Caller {
                identity: identity.clone(),
            },
            read_at: ReadAt::Latest,
            request_id: tickethub_runtime::RequestId::generate(),
        })
        .await
}

/// Args refused before any function runs, with the code and message `/api/*` answers the same
/// args with; over the socket they reach the client as `"<code>: <message>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ArgsRefused {
    pub code: &'static str,
    pub message: String,
}

impl ArgsRefused {
    fn bad_request(message: &str) -> ArgsRefused {
        ArgsRefused {
            code: "BadRequest",
            message: message.to_string(),
        }
    }

    /// The refusal as a subscription's (permanent) result.
    fn into_outcome(self, hub: &SyncHub) -> QueryOutcome {
        QueryOutcome {
            result: Err(QueryError {
                message: self.to_string(),
                data: None,
            }),
            log_lines: Vec::new(),
            read_set: Some(ReadSet::default()),
            ts: hub.processed_ts(),
        }
    }
}

/// `args` is `[obj]` on the wire. Anything else is refused as `/api/*` refuses it, so a function
/// never sees args that are not a valid object (a `v.any()` function would otherwise get them).
/// Public for the fuzz targets (`fuzz/`), which feed it what a client could send.
pub fn decode_args(args: &[serde_json::Value]) -> Result<Value, ArgsRefused> {
    let object = match args {
        [] => return Ok(Value::Object(Default::default())),
        [one] => one,
        _ => {
            return Err(ArgsRefused::bad_request(
                "\"args\" must be an array holding one object, or an object.",
            ))
        }
    };
    if !object.is_object() {
        return Err(ArgsRefused::bad_request(
            "Function arguments must be an object.",
        ));
    }
    Value::from_convex_json(object).map_err(|e| ArgsRefused {
        code: "InvalidValue",
        message: format!("Invalid function arguments: {e}"),
    })
}

fn modification(query_id: QueryId, outcome: &QueryOutcome) -> StateModification {
    match &outcome.result {
        Ok(value) => StateModification::QueryUpdated {
            query_id,
            value: value.clone(),
            log_lines: outcome.log_lines.clone(),
            journal: None,
        },
        Err(error) => StateModification::QueryFailed {
            query_id,
            error_message: error.message.clone(),
            log_lines: outcome.log_lines.clone(),
            journal: None,
            error_data: error.data.clone(),
        },
    }
}

/// (success, result-or-message, errorData) of a Mutation/ActionResponse.
fn response_parts(
    outcome: Result<Value, FnError>,
) -> (bool, serde_json::Value, Option<serde_json::Value>) {
    match outcome {
        Ok(value) => (true, value.to_convex_json(), None),
        Err(error) => {
            let QueryError { message, data } = client_error(&error);
            (false, serde_json::Value::String(message), data)
        }
    }
}

/// What a client may see of a function error: user errors as they are, internal ones as a generic
/// message (the details are in the server log).
pub(crate) fn client_error(error: &FnError) -> QueryError {
    if !error.is_user_visible() {
        // The server's own refusals (a full disk, overload, shutdown, an unreachable database or
        // a lost writer lease) keep their stable code in
        // front of a plain message: the client can tell "retry later" from a bug. Their texts
        // carry no SQL or paths.
        if let code @ ("StorageFull"
        | "ServerOverloaded"
        | "ShuttingDown"
        | "DatabaseInUse"
        | "WriterFenced"
        | "DatabaseUnavailable"
        | "LeaderUnavailable") = error.code()
        {
            tracing::warn!(code, error = ?error, "function refused on a sync connection");
            return QueryError {
                message: format!("{code}: {error}"),
                data: None,
            };
        }
        tracing::error!(code = error.code(), %error, "function failed on a sync connection");
        return QueryError {
            message: "Server Error".to_string(),
            data: None,
        };
    }
    QueryError {
        message: error.to_string(),
        data: error.data().map(Value::to_convex_json),
    }
}
