//! One WebSocket connection: its query set, identity and versions.
//!
//! Two tasks per connection. The session task reads client messages and commit wake-ups and
//! decides what to send; the writer task drains a bounded outbox into the socket, sends `Ping`
//! after [`PING_AFTER_IDLE`] of silence, and gives up on a client that does not take a message
//! within [`SEND_TIMEOUT`]. Commits reach the session through a `watch` channel, so a session that
//! falls behind skips intermediate states and catches up to the latest in one Transition.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickethub_runtime::{CallRequest, Caller, FnError, FunctionKind, Identity, ReadAt};
use tickethub_store::{ReadSet, Timestamp, WriteSet};
use tickethub_value::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::hub::{Missed, QueryError, QueryKey, QueryOutcome, SyncHub};
use crate::protocol::{
    ClientMessage, QueryId, QuerySetModification, ServerMessage, StateModification, StateVersion,
};

/// The client reconnects after 60 s without a message; a Ping after 15 s idle keeps it calm.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(15);
/// A client that does not accept a message for this long is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Messages waiting for the socket, per connection. When full, the session waits (only itself).
pub const OUTBOX_CAPACITY: usize = 64;
/// How long a mutation's response waits for its commit to reach the hub before the Transition.
const COMMIT_VISIBLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve one upgraded connection until it closes.
pub async fn serve<S>(hub: Arc<SyncHub>, socket: WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    hub.metrics.connections_open.fetch_add(1, Ordering::Relaxed);
    let (sink, mut incoming) = socket.split();
    let (outbox, outbox_rx) = mpsc::channel(OUTBOX_CAPACITY);
    let writer = tokio::spawn(write_loop(sink, outbox_rx));
    let mut commits = hub.subscribe_commits();
    let latest = *commits.borrow_and_update();
    let mut session = Session {
        hub: hub.clone(),
        outbox,
        version: StateVersion::default(),
        processed: latest,
        identity: Identity::Anonymous,
        queries: BTreeMap::new(),
    };
    loop {
        let step = tokio::select! {
            message = incoming.next() => match message {
                Some(Ok(Message::Text(text))) => session.on_text(&text).await,
                Some(Ok(Message::Binary(_))) => Err(Close::Fatal("binary frames are not part of the protocol".into())),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(Close::Quietly),
                Some(Ok(_)) => Ok(()),
            },
            changed = commits.changed() => match changed {
                Ok(()) => session.transition(Change::default()).await,
                Err(_) => Err(Close::Quietly),
            },
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
        }
    }
    drop(session);
    let _ = writer.await;
    hub.metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut outbox: mpsc::Receiver<ServerMessage>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let message = match tokio::time::timeout(PING_AFTER_IDLE, outbox.recv()).await {
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
        match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::text(text))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                tracing::info!("dropping a sync client that stopped reading");
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
}

enum Close {
    /// The peer went away.
    Quietly,
    /// A protocol violation: tell the client, then close.
    Fatal(String),
    /// The AuthError was sent; close so the client reconnects and re-authenticates.
    AfterAuthError,
}

struct Subscription {
    query: QueryKey,
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
    /// Every commit up to here is reflected in the results the client has.
    processed: Timestamp,
    identity: Identity,
    queries: BTreeMap<QueryId, Subscription>,
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
                            let query = QueryKey::new(udf_path, decode_args(&args));
                            self.queries
                                .insert(query_id, Subscription { query, last: None });
                            change.added.push(query_id);
                        }
                        QuerySetModification::Remove { query_id } => {
                            self.queries.remove(&query_id);
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
                    // ts, and by then every subscription must reflect the write.
                    let mut commits = self.hub.subscribe_commits();
                    let _ = tokio::time::timeout(
                        COMMIT_VISIBLE_TIMEOUT,
                        commits.wait_for(|latest| *latest >= ts),
                    )
                    .await;
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
                let hub = self.hub.clone();
                let outbox = self.outbox.clone();
                let identity = self.identity.clone();
                tokio::spawn(async move {
                    let result = call(&hub, &identity, FunctionKind::Action, udf_path, &args).await;
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
            } => {
                match self
                    .hub
                    .auth()
                    .authenticate(token_type, value.as_deref())
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

    /// Bring the client up to the latest commit: re-run the subscriptions whose read set a commit
    /// touched (all of them when the identity changed or the log no longer reaches back), plus the
    /// added ones, and send one Transition with whatever changed.
    async fn transition(&mut self, change: Change) -> Result<(), Close> {
        let latest = self.hub.latest_ts().max(self.processed);
        let identity_changed = change.new_identity.is_some();
        let mut to_run: Vec<QueryId> = if identity_changed {
            self.queries.keys().copied().collect()
        } else if latest > self.processed {
            match self.hub.missed_since(self.processed) {
                Missed::TooOld => self.queries.keys().copied().collect(),
                Missed::Writes(writes) => self
                    .queries
                    .iter()
                    .filter(|(_, sub)| {
                        touched(sub.last.as_ref().and_then(|o| o.read_set.as_ref()), &writes)
                    })
                    .map(|(id, _)| *id)
                    .collect(),
            }
        } else {
            Vec::new()
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
            let outcome = self.hub.run_query(&sub.query, &self.identity).await;
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
            ts: self.version.ts.max(latest),
        };
        self.processed = latest;
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
    hub.runtime()
        .call(CallRequest {
            path,
            args: decode_args(args),
            expected_kind: Some(kind),
            caller: Caller {
                identity: identity.clone(),
            },
            read_at: ReadAt::Latest,
            request_id: tickethub_runtime::RequestId::generate(),
        })
        .await
}

/// `args` is `[obj]` on the wire. A value that fails to decode is passed on as a string the
/// function's validator will reject with a readable message, rather than killing the socket.
fn decode_args(args: &[serde_json::Value]) -> Value {
    match args.first() {
        None => Value::Object(Default::default()),
        Some(json) => Value::from_convex_json(json)
            .unwrap_or_else(|error| Value::String(format!("invalid args: {error}"))),
    }
}

/// Whether a query that read `read_set` may see a different result after `writes`.
fn touched(read_set: Option<&ReadSet>, writes: &[Arc<WriteSet>]) -> bool {
    match read_set {
        // A query whose reads were not recorded (it failed early, say) re-runs on any commit.
        None => !writes.is_empty(),
        Some(reads) => writes.iter().any(|w| reads.overlaps(w)),
    }
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
