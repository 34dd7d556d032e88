//! Cluster mode over HTTP: a follower forwards top-level mutations and actions to the leader
//! ([`HttpForwarder`]), which runs them through `/api/_cluster/call` ([`handle`]). Only the
//! admin key may call that endpoint: the follower has already checked the caller's credentials
//! and sends the identity it resolved.
//!
//! The leader answers with the commit timestamp, so the follower resolves the mutation (on a sync
//! session or over HTTP) only once it has fed that commit into its own live queries. A relayed
//! request's answer carries the leader's latest commit the same way ([`stamp_latest_commit`]):
//! a caller's next read through the follower sees what its request wrote.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tickethub_runtime::{
    CallRequest, CallResult, Caller, FnError, Forwarder, FunctionKind, Identity, ReadAt, RequestId,
    UserIdentity,
};
use tickethub_store::{NodeRole, Store, StoreError, Timestamp};
use tickethub_value::{Object, Value};

use crate::body::{parse_json, read_api_body};
use crate::credentials::require_admin;
use crate::error::{json_response, ApiError, ErrorCode};
use crate::response_body::ResponseBody;
use crate::state::AppState;

/// The leader's endpoint for forwarded calls.
pub const CALL_PATH: &str = "/api/_cluster/call";

/// How long a follower waits for the leader's answer. A mutation's answer is lost if the leader
/// dies meanwhile; the caller then hears `LeaderUnavailable` (the write may or may not have
/// committed, as with any lost answer).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum WireIdentity {
    Anonymous,
    Admin,
    User { user: serde_json::Value },
    InvalidToken { message: String },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ForwardedCall {
    path: String,
    mutation: bool,
    args: serde_json::Value,
    identity: WireIdentity,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireError {
    code: String,
    message: String,
    data: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ForwardedAnswer {
    value: Option<serde_json::Value>,
    error: Option<WireError>,
    log_lines: Vec<String>,
    /// The commit timestamp, as a decimal string (u64 does not fit a JSON number).
    ts: Option<String>,
}

fn identity_to_wire(identity: &Identity) -> WireIdentity {
    match identity {
        Identity::Anonymous => WireIdentity::Anonymous,
        Identity::Admin => WireIdentity::Admin,
        Identity::User(user) => WireIdentity::User {
            user: serde_json::to_value(user).unwrap_or(serde_json::Value::Null),
        },
        Identity::InvalidToken(message) => WireIdentity::InvalidToken {
            message: message.clone(),
        },
    }
}

fn identity_from_wire(wire: WireIdentity) -> Result<Identity, String> {
    Ok(match wire {
        WireIdentity::Anonymous => Identity::Anonymous,
        WireIdentity::Admin => Identity::Admin,
        WireIdentity::InvalidToken { message } => Identity::InvalidToken(message),
        WireIdentity::User { user } => {
            let serde_json::Value::Object(fields) = user else {
                return Err("a forwarded user identity is not an object".into());
            };
            let text = |name: &str| {
                fields
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_string)
                    .ok_or_else(|| format!("a forwarded user identity has no {name}"))
            };
            let mut attributes = Object::new();
            for (name, value) in &fields {
                if !matches!(name.as_str(), "tokenIdentifier" | "subject" | "issuer") {
                    let value = Value::from_clean_json(value).map_err(|e| e.to_string())?;
                    attributes.insert(name.clone(), value);
                }
            }
            Identity::User(UserIdentity {
                token_identifier: text("tokenIdentifier")?,
                subject: text("subject")?,
                issuer: text("issuer")?,
                attributes,
            })
        }
    })
}

/// The leader's error as the follower's caller sees it: the same code where it is one the
/// follower can carry (user errors, validation, the server's refusals), else a user error with
/// the leader's message (user-visible) or an internal error (its text stays in the leader's log).
fn error_from_wire(path: &str, error: WireError) -> FnError {
    let WireError {
        code,
        message,
        data,
    } = error;
    let strip = |prefix: &str| message.strip_prefix(prefix).unwrap_or(&message).to_string();
    match code.as_str() {
        "UserError" => match data.and_then(|d| Value::from_convex_json(&d).ok()) {
            Some(data) => FnError::Convex { message, data },
            None => FnError::Message(message),
        },
        "ArgumentValidationError" => {
            FnError::ArgumentValidation(strip("ArgumentValidationError: "))
        }
        "ReturnsValidationError" => FnError::ReturnsValidation(strip("ReturnsValidationError: ")),
        "FunctionNotFound" => FnError::NotFound(path.to_string()),
        "Unauthenticated" => FnError::Unauthenticated(message),
        "WriterFenced" | "LeaderUnavailable" | "ShuttingDown" => {
            FnError::Store(StoreError::LeaderUnavailable)
        }
        "DatabaseUnavailable" => FnError::Store(StoreError::DatabaseUnavailable(
            tickethub_store::StorageFailure::other(message),
        )),
        "ServerOverloaded" => FnError::Store(StoreError::Overloaded { capacity: 0 }),
        "InternalServerError" | "InternalError" | "StorageError" | "StorageFull" => {
            FnError::Internal(format!("on the leader: {message}"))
        }
        _ => FnError::Message(message),
    }
}

fn unavailable() -> CallResult {
    CallResult {
        outcome: Err(FnError::Store(StoreError::LeaderUnavailable)),
        log_lines: Vec::new(),
        ts: None,
        read_set: None,
    }
}

/// How long a follower waits to learn who leads before it answers `LeaderUnavailable`: a
/// node that just stepped down, or a lease that just moved, names the new leader within a
/// commit-log poll, and a write held that long beats a refusal the caller must retry.
const LEADER_WAIT: Duration = Duration::from_secs(2);
const LEADER_WAIT_STEP: Duration = Duration::from_millis(25);

/// The leader's advertised URL, waiting up to [`LEADER_WAIT`] for one to be known.
async fn known_leader(store: &Store) -> Option<String> {
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        if let Some(leader) = store.leader_url() {
            return Some(leader);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(LEADER_WAIT_STEP).await;
    }
}

/// Forwards a follower's writes to the leader named in the lease row.
pub struct HttpForwarder {
    client: reqwest::Client,
    admin_key: String,
    store: Store,
}

impl HttpForwarder {
    pub fn new(admin_key: &str, store: Store) -> Arc<HttpForwarder> {
        Arc::new(HttpForwarder {
            client: reqwest::Client::builder()
                .timeout(FORWARD_TIMEOUT)
                .build()
                .expect("a plain HTTP client builds"),
            admin_key: admin_key.to_string(),
            store,
        })
    }

    async fn send(&self, request: CallRequest, kind: FunctionKind) -> CallResult {
        let Some(leader) = known_leader(&self.store).await else {
            return unavailable();
        };
        let body = ForwardedCall {
            path: request.path.clone(),
            mutation: kind == FunctionKind::Mutation,
            args: request.args.to_convex_json(),
            identity: identity_to_wire(&request.caller.identity),
        };
        let sent = self
            .client
            .post(format!("{}{CALL_PATH}", leader.trim_end_matches('/')))
            .header("authorization", format!("Convex {}", self.admin_key))
            .json(&body)
            .send()
            .await;
        let response = match sent {
            Ok(response) if response.status().is_success() => response,
            Ok(response) => {
                tracing::warn!(%leader, status = %response.status(), "cluster: the leader refused a forwarded call");
                return unavailable();
            }
            Err(e) => {
                tracing::warn!(%leader, error = %e, "cluster: the leader could not be reached");
                return unavailable();
            }
        };
        let answer: ForwardedAnswer = match response.json().await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::warn!(%leader, error = %e, "cluster: the leader's answer did not decode");
                return unavailable();
            }
        };
        let ts = answer.ts.and_then(|t| t.parse::<u64>().ok()).map(Timestamp);
        let outcome = match (answer.error, answer.value) {
            (Some(error), _) => Err(error_from_wire(&request.path, error)),
            (None, Some(value)) => Value::from_convex_json(&value)
                .map_err(|e| FnError::Internal(format!("the leader's value: {e}"))),
            (None, None) => Ok(Value::Null),
        };
        CallResult {
            outcome,
            log_lines: answer.log_lines,
            ts,
            read_set: None,
        }
    }
}

impl Forwarder for HttpForwarder {
    fn forward(&self, request: CallRequest, kind: FunctionKind) -> BoxFuture<'static, CallResult> {
        let this = HttpForwarder {
            client: self.client.clone(),
            admin_key: self.admin_key.clone(),
            store: self.store.clone(),
        };
        Box::pin(async move { this.send(request, kind).await })
    }
}

/// `/api/_cluster/call` on the leader: run a forwarded mutation or action.
pub(crate) async fn handle(
    state: Arc<AppState>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, ApiError> {
    let (parts, body) = request.into_parts();
    if parts.method != Method::POST {
        return Err(ApiError::new(
            ErrorCode::MethodNotAllowed,
            format!("Use POST for {CALL_PATH}."),
        ));
    }
    require_admin(
        &parts.headers,
        state.authenticator.as_ref(),
        "Forwarded calls need the admin key.",
    )
    .await?;
    // A node that does not lead never runs a forwarded write (no loops between followers).
    if state.runtime.store().role() != NodeRole::Leader {
        return Err(ApiError::new(
            ErrorCode::LeaderUnavailable,
            "This node is not the cluster's leader.",
        ));
    }
    let bytes = read_api_body(&state, &parts.headers, body).await?;
    let call: ForwardedCall = parse_json(&bytes)?;
    let args = Value::from_convex_json(&call.args)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("forwarded args: {e}")))?;
    let identity =
        identity_from_wire(call.identity).map_err(|e| ApiError::new(ErrorCode::BadRequest, e))?;
    let result = state
        .runtime
        .call(CallRequest {
            path: call.path,
            args,
            expected_kind: Some(if call.mutation {
                FunctionKind::Mutation
            } else {
                FunctionKind::Action
            }),
            caller: Caller { identity },
            read_at: ReadAt::Latest,
            request_id: RequestId::generate(),
        })
        .await;
    let ts = result.ts.map(|t| t.0.to_string());
    let answer = match result.outcome {
        Ok(value) => ForwardedAnswer {
            value: Some(value.to_convex_json()),
            error: None,
            log_lines: result.log_lines,
            ts,
        },
        Err(error) => {
            let message = if error.is_user_visible() {
                error.to_string()
            } else {
                tracing::error!(code = error.code(), %error, "a forwarded call failed");
                format!("{}: {}", error.code(), error)
            };
            ForwardedAnswer {
                value: None,
                error: Some(WireError {
                    code: error.code().to_string(),
                    message,
                    data: error.data().map(Value::to_convex_json),
                }),
                log_lines: result.log_lines,
                ts: None,
            }
        }
    };
    let bytes = serde_json::to_vec(&answer)
        .map_err(|e| ApiError::new(ErrorCode::InternalServerError, e.to_string()))?;
    Ok(json_response(StatusCode::OK, bytes))
}

// ---- whole requests relayed to the leader ---------------------------------------------------

/// Marks a request a follower relayed, so a node that is not (or no longer) the leader refuses
/// it instead of relaying it again: two nodes with stale views of the lease never bounce a
/// request between them.
const RELAYED_HEADER: &str = "x-tickethub-relayed-by";

/// On a relayed request's answer: the leader's latest commit timestamp when it answered, so the
/// follower passes the answer on only once it has heard of every commit the request made.
const COMMIT_TS_HEADER: &str = "x-tickethub-commit-ts";

/// How long a follower holds an answer until it has heard of the leader's commit (NOTIFY, or the
/// commit-log poll at worst). Past it the answer goes out anyway: the write is durable, only this
/// node's view lags.
const SEEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether another node relayed this request (it carries [`RELAYED_HEADER`]).
pub(crate) fn is_relayed<B>(request: &Request<B>) -> bool {
    request.headers().contains_key(RELAYED_HEADER)
}

/// On the node that served a relayed request: name the latest commit in the answer.
pub(crate) fn stamp_latest_commit(state: &AppState, response: &mut Response<ResponseBody>) {
    let latest = state.runtime.store().latest_ts().0;
    response
        .headers_mut()
        .insert(COMMIT_TS_HEADER, http::HeaderValue::from(latest));
}

/// On a follower: wait until this node has heard of the commit at `ts` and matched it against
/// its live queries, so the caller's next read here (a query over HTTP, or a subscription) sees
/// its own write. Bounded by [`SEEN_TIMEOUT`].
pub(crate) async fn until_seen(state: &AppState, ts: Timestamp) {
    if state.runtime.store().role() != NodeRole::Follower {
        return;
    }
    if !state.sync.until_processed(ts, SEEN_TIMEOUT).await {
        tracing::warn!(
            ts = ts.0,
            "cluster: this node has not heard of the leader's commit in time; answering anyway"
        );
    }
}

/// Largest relayed answer without a `Content-Length` that is buffered (HTTP actions' answers and
/// the CLI's JSON; a stored file or an export comes with its length and is streamed).
const RELAY_MAX_BUFFERED_BYTES: usize = 64 * 1024 * 1024;

/// Chunks of a streamed relayed answer in flight between the leader's socket and the client's.
const RELAY_QUEUE_CHUNKS: usize = 4;

/// How long a relayed request may take until the leader's answer starts. Longer than
/// [`FORWARD_TIMEOUT`]: an upload's answer comes only after its whole body went through (the
/// leader's own read deadlines cut a stalled one); this bound is for a leader that went silent.
const RELAY_ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// How long connecting to the leader may take (loopback or a LAN: a dead leader refuses or
/// times out fast; the lease moves elsewhere meanwhile).
const RELAY_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, never the next.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

type RelayBody =
    http_body_util::combinators::BoxBody<bytes::Bytes, Box<dyn std::error::Error + Send + Sync>>;
type RelayClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    RelayBody,
>;

fn relay_client() -> &'static RelayClient {
    static CLIENT: std::sync::OnceLock<RelayClient> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_connect_timeout(Some(RELAY_CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector)
    })
}

/// Whether this node must hand writes other than function calls to the leader: a cluster
/// follower. (Function calls are forwarded by the runtime, one call at a time.)
pub(crate) fn relays_writes(state: &AppState) -> bool {
    state.runtime.store().role() == NodeRole::Follower
}

/// A request body for [`relay`]: the client's, as it streams in.
pub(crate) fn incoming_body(body: Incoming) -> RelayBody {
    use http_body_util::BodyExt;
    body.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed()
}

/// No request body (a relayed GET).
pub(crate) fn empty_body() -> RelayBody {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed()
}

fn leader_unavailable(message: &str) -> Response<ResponseBody> {
    ApiError::new(ErrorCode::LeaderUnavailable, message.to_string()).into_response()
}

/// Relay a whole request to the leader's API port, at `path_and_query` there, and give back
/// its answer as it is (status, headers, body streamed). Used on a follower for the writes that
/// are not a single function call: HTTP actions (which are actions, and actions run on the
/// leader), file uploads, the CLI's and dashboard's writes, snapshot export and import (their
/// state lives in the leader's memory and disk). When no leader is known, or it cannot be
/// reached, the caller gets 503 `LeaderUnavailable`: nothing was done, or (a lost answer) the
/// caller cannot know, as with any lost answer; it retries.
pub(crate) async fn relay(
    state: &AppState,
    parts: http::request::Parts,
    body: RelayBody,
    path_and_query: &str,
) -> Response<ResponseBody> {
    if parts.headers.contains_key(RELAYED_HEADER) {
        return leader_unavailable(
            "This node does not lead the cluster either; the leadership is moving. Retry.",
        );
    }
    let Some(leader) = known_leader(state.runtime.store()).await else {
        return leader_unavailable(
            "No node of the cluster leads right now (a failover is in progress). Retry.",
        );
    };
    let uri: http::Uri = match format!("{}{path_and_query}", leader.trim_end_matches('/')).parse() {
        Ok(uri) => uri,
        Err(e) => {
            tracing::error!(%leader, error = %e, "cluster: the leader's advertised URL does not make a URI");
            return leader_unavailable("The cluster's leader cannot be reached. Retry.");
        }
    };
    let mut builder = Request::builder().method(parts.method.clone()).uri(uri);
    for (name, value) in &parts.headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            builder = builder.header(name, value);
        }
    }
    let node = state.runtime.store().node_id().unwrap_or_default();
    builder = builder.header(RELAYED_HEADER, node);
    let request = match builder.body(body) {
        Ok(request) => request,
        Err(e) => return ApiError::internal(e).into_response(),
    };
    let head_only = parts.method == Method::HEAD;
    let answer = tokio::time::timeout(RELAY_ANSWER_TIMEOUT, relay_client().request(request)).await;
    let response = match answer {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::warn!(%leader, error = %e, "cluster: relaying a request to the leader failed");
            return leader_unavailable("The cluster's leader cannot be reached. Retry.");
        }
        Err(_) => {
            tracing::warn!(%leader, "cluster: the leader did not answer a relayed request in time");
            return leader_unavailable("The cluster's leader did not answer in time. Retry.");
        }
    };
    let (mut head, incoming) = response.into_parts();
    let leader_ts = head
        .headers
        .remove(COMMIT_TS_HEADER)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(ts) = leader_ts {
        until_seen(state, Timestamp(ts)).await;
    }
    let length = head
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // No body follows a HEAD's answer, a 204 or a 304, whatever Content-Length says.
    let bodiless = head_only
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED;
    let body = match length {
        _ if bodiless => ResponseBody::default(),
        Some(length) => stream_body(incoming, length),
        None => {
            use http_body_util::BodyExt;
            let limited = http_body_util::Limited::new(incoming, RELAY_MAX_BUFFERED_BYTES);
            match limited.collect().await {
                Ok(collected) => ResponseBody::new(collected.to_bytes()),
                Err(e) => {
                    tracing::warn!(%leader, error = %e, "cluster: reading the leader's relayed answer failed");
                    return leader_unavailable("The cluster's leader's answer was cut off. Retry.");
                }
            }
        }
    };
    let mut out = Response::builder().status(head.status);
    for (name, value) in &head.headers {
        if !HOP_BY_HOP.contains(&name.as_str())
            && (bodiless || name != http::header::CONTENT_LENGTH)
        {
            out = out.header(name, value);
        }
    }
    out.body(body)
        .unwrap_or_else(|e| ApiError::internal(e).into_response())
}

/// A leader's answer of known length, passed on chunk by chunk (a large file holds a few chunks
/// in memory, never all of it).
fn stream_body(mut incoming: Incoming, length: u64) -> ResponseBody {
    use http_body_util::BodyExt;
    let (sender, receiver) = tokio::sync::mpsc::channel(RELAY_QUEUE_CHUNKS);
    tokio::spawn(async move {
        while let Some(frame) = incoming.frame().await {
            let chunk = match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(data) => Ok(data),
                    Err(_trailers) => continue,
                },
                Err(e) => Err(std::io::Error::other(e)),
            };
            let failed = chunk.is_err();
            if sender.send(chunk).await.is_err() || failed {
                return;
            }
        }
    });
    ResponseBody::streamed(receiver, length)
}
