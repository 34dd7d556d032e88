//! [`SyncHub`]: what all connections share.
//!
//! - It hears every durable commit batch from the store (a cheap `watch` bump on the writer
//!   thread), and one dispatcher task reads the store's [`CommitLog`](tickethub_store::CommitLog)
//!   from where it left off and matches each written index key against [`Subscriptions`]: one
//!   index from read-set ranges (index id + key range) to the subscriptions that read them, as
//!   Convex's subscription manager keeps. Only the sessions holding an affected subscription are
//!   woken, with the ids of the queries to re-run; a commit that touches no subscription costs a
//!   few tree lookups whatever the number of subscribers.
//! - It memoises query results per snapshot so that 1,000 subscribers of one query cost one
//!   execution.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tickethub_runtime::{CallRequest, Caller, FunctionKind, Identity, ReadAt, Runtime};
use tickethub_store::{IndexId, ReadSet, Timestamp, WriteSet};
use tickethub_value::Value;
use tokio::sync::{watch, Notify, OnceCell};

use crate::protocol::{QueryId, TokenType};
use crate::ranges::{End, KeyRange, RangeMap};

/// The sync knobs, as one value so tests can set them; [`Default`] reads the knobs.
#[derive(Clone, Copy, Debug)]
pub struct SyncOptions {
    /// Memoised query results kept at most; the memo is cleared when it grows past this, and
    /// 0 turns it off.
    pub memo_capacity: usize,
    /// Messages waiting for the socket, per connection. When full, the session waits (only itself).
    pub outbox_capacity: usize,
    /// A client that does not accept a message for this long is dropped.
    pub send_timeout: Duration,
    /// The client reconnects after 60 s without a message; a Ping after this much idle keeps it calm.
    pub ping_after_idle: Duration,
    /// Actions one connection may have running; more are refused with `TooManyConcurrentActions`.
    pub max_actions_per_connection: usize,
    /// Queries one connection may have subscribed; a `ModifyQuerySet` past it closes the
    /// connection with `TooManySubscriptions`.
    pub max_queries_per_connection: usize,
    /// Largest message or frame a client may send; a bigger one closes the socket with 1009.
    pub max_message_bytes: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        use tickethub_knobs as knobs;
        SyncOptions {
            memo_capacity: *knobs::SYNC_MEMO_CAPACITY,
            outbox_capacity: *knobs::SYNC_OUTBOX_CAPACITY,
            send_timeout: *knobs::SYNC_SEND_TIMEOUT,
            ping_after_idle: *knobs::SYNC_PING_AFTER_IDLE,
            max_actions_per_connection: *knobs::SYNC_MAX_ACTIONS_PER_CONNECTION,
            max_queries_per_connection: *knobs::SYNC_MAX_QUERIES_PER_CONNECTION,
            max_message_bytes: *knobs::SYNC_MAX_MESSAGE_BYTES,
        }
    }
}

/// Turns an `Authenticate` message into an identity. The router implements it with the same
/// token verifier and admin key as `/api/*`. `impersonating` (admin only) is the identity the
/// admin acts as.
pub trait SyncAuth: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        token_type: TokenType,
        value: Option<&'a str>,
        impersonating: Option<&'a serde_json::Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Identity, String>> + Send + 'a>>;
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default)]
pub struct SyncMetrics {
    /// Query executions done for subscriptions (memo hits excluded).
    pub query_executions: AtomicU64,
    pub connections_open: AtomicU64,
    pub transitions_sent: AtomicU64,
    /// Session wake-ups for commits (one per session per dispatch that touched it).
    pub sessions_woken: AtomicU64,
    /// Commit batches matched against the subscriptions.
    pub commits_dispatched: AtomicU64,
}

/// A query result as it is sent: encoded to JSON text once, however many subscribers share it.
#[derive(Debug)]
pub struct QueryOutcome {
    pub result: Result<EncodedValue, QueryError>,
    pub log_lines: Vec<String>,
    pub read_set: Option<ReadSet>,
    pub ts: Timestamp,
}

/// A value already in convex_encoded_json text, embedded as is in every message that carries it.
#[derive(Debug, Clone)]
pub struct EncodedValue(Arc<Box<RawValue>>);

impl EncodedValue {
    pub fn new(value: &Value) -> EncodedValue {
        let text = value.to_convex_json().to_string();
        // The text came from serde_json itself, so it is valid JSON.
        let raw = RawValue::from_string(text).expect("serde_json output is valid JSON");
        EncodedValue(Arc::new(raw))
    }
}

impl PartialEq for EncodedValue {
    fn eq(&self, other: &EncodedValue) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.get() == other.0.get()
    }
}

impl serde::Serialize for EncodedValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueryError {
    pub message: String,
    pub data: Option<serde_json::Value>,
}

impl QueryOutcome {
    /// Two outcomes that would look the same to the client.
    pub fn same_as_seen_by_client(&self, other: &QueryOutcome) -> bool {
        std::ptr::eq(self, other)
            || (self.result == other.result && self.log_lines == other.log_lines)
    }
}

/// A subscribed query: its path and args, with the args' JSON text computed once for memo lookups.
#[derive(Clone, Debug)]
pub struct QueryKey {
    path: String,
    args: Value,
    args_text: Arc<str>,
}

impl QueryKey {
    pub fn new(path: String, args: Value) -> QueryKey {
        let args_text = args.to_convex_json().to_string().into();
        QueryKey {
            path,
            args,
            args_text,
        }
    }
}

impl PartialEq for QueryKey {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.args_text == other.args_text
    }
}
impl Eq for QueryKey {}
impl std::hash::Hash for QueryKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.path.hash(state);
        self.args_text.hash(state);
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct MemoKey {
    query: QueryKey,
    identity: String,
}

struct MemoEntry {
    ts: Timestamp,
    cell: OnceCell<Arc<QueryOutcome>>,
}

/// One connection, as the hub knows it.
pub type SessionId = u64;

/// What a session must re-run, filled in by the dispatcher.
#[derive(Debug, Default)]
pub struct Dirty {
    /// Re-run everything: the log no longer reached back far enough to know what changed.
    pub everything: bool,
    pub queries: BTreeSet<QueryId>,
}

/// How the dispatcher wakes one session: the dirty set, and a permit-storing `Notify` (so wake-ups
/// coalesce: a session that falls behind skips intermediate commits and catches up in one go).
#[derive(Default)]
pub struct SessionSignal {
    dirty: Mutex<Dirty>,
    pub(crate) notify: Notify,
}

impl SessionSignal {
    /// Take what has been marked since the last call.
    pub fn take(&self) -> Dirty {
        std::mem::take(&mut *self.dirty.lock())
    }
}

/// A subscription's place in the index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Token {
    session: SessionId,
    query: QueryId,
}

/// What one subscription registered.
enum Registered {
    Ranges(Vec<(IndexId, KeyRange)>),
    /// No read set was recorded (the query failed before it read): re-run on every commit.
    AnyCommit,
}

struct SessionEntry {
    signal: Arc<SessionSignal>,
    queries: HashMap<QueryId, Registered>,
}

/// The one index from read-set ranges to subscriptions, and the commit timestamp up to which
/// every commit has been matched against it. Both change under one lock, so a subscription
/// registered at a snapshot older than `processed` can check the commits it missed.
#[derive(Default)]
pub(crate) struct Subscriptions {
    processed: Timestamp,
    sessions: HashMap<SessionId, SessionEntry>,
    by_index: HashMap<IndexId, RangeMap<Token>>,
    any_commit: HashSet<Token>,
}

impl Subscriptions {
    fn unregister(&mut self, token: Token) {
        let Some(entry) = self.sessions.get_mut(&token.session) else {
            return;
        };
        match entry.queries.remove(&token.query) {
            Some(Registered::Ranges(ranges)) => {
                for (index, range) in ranges {
                    if let Some(map) = self.by_index.get_mut(&index) {
                        map.remove(&range, &token);
                        if map.is_empty() {
                            self.by_index.remove(&index);
                        }
                    }
                }
            }
            Some(Registered::AnyCommit) => {
                self.any_commit.remove(&token);
            }
            None => {}
        }
    }

    /// Mark every subscription a commit's writes touch; collect the sessions to wake.
    fn mark_touched(&self, writes: &WriteSet, woken: &mut HashSet<SessionId>) {
        if writes.everything {
            // A bulk commit (import) lists no keys: every subscription may have changed.
            return self.mark_everything(woken);
        }
        let mut mark = |token: &Token| {
            if let Some(entry) = self.sessions.get(&token.session) {
                entry.signal.dirty.lock().queries.insert(token.query);
                woken.insert(token.session);
            }
        };
        for written in &writes.keys {
            if let Some(map) = self.by_index.get(&written.index) {
                map.for_each_containing(&written.key, &mut mark);
            }
        }
        if !writes.is_empty() {
            self.any_commit.iter().for_each(&mut mark);
        }
    }

    fn mark_everything(&self, woken: &mut HashSet<SessionId>) {
        for (id, entry) in &self.sessions {
            entry.signal.dirty.lock().everything = true;
            woken.insert(*id);
        }
    }

    fn wake(&self, woken: &HashSet<SessionId>) {
        for id in woken {
            if let Some(entry) = self.sessions.get(id) {
                entry.signal.notify.notify_one();
            }
        }
    }
}

pub struct SyncHub {
    runtime: Runtime,
    auth: Arc<dyn SyncAuth>,
    options: SyncOptions,
    /// Every commit up to here has been matched against the subscriptions.
    processed: watch::Sender<Timestamp>,
    subscriptions: Mutex<Subscriptions>,
    memo: DashMap<MemoKey, Arc<MemoEntry>>,
    next_session: AtomicU64,
    pub metrics: SyncMetrics,
}

impl SyncHub {
    /// Create the hub with the knobs' settings and subscribe it to the store's durable commits.
    /// Needs a tokio runtime: it starts the dispatcher task.
    pub fn new(runtime: Runtime, auth: Arc<dyn SyncAuth>) -> Arc<SyncHub> {
        SyncHub::with_options(runtime, auth, SyncOptions::default())
    }

    pub fn with_options(
        runtime: Runtime,
        auth: Arc<dyn SyncAuth>,
        options: SyncOptions,
    ) -> Arc<SyncHub> {
        let store = runtime.store().clone();
        let start = store.latest_ts();
        let (processed, _) = watch::channel(start);
        let hub = Arc::new(SyncHub {
            runtime,
            auth,
            options,
            processed,
            subscriptions: Mutex::new(Subscriptions {
                processed: start,
                ..Subscriptions::default()
            }),
            memo: DashMap::new(),
            next_session: AtomicU64::new(0),
            metrics: SyncMetrics::default(),
        });
        // The writer thread only bumps this; the matching happens on the dispatcher task.
        let (committed, commits) = watch::channel(start);
        store.on_commit(Box::new(move |batch| {
            if let Some(newest) = batch.iter().map(|c| c.ts).max() {
                committed.send_if_modified(|current| {
                    let newer = newest > *current;
                    if newer {
                        *current = newest;
                    }
                    newer
                });
            }
        }));
        tokio::spawn(dispatch_loop(Arc::downgrade(&hub), commits));
        hub
    }

    pub fn options(&self) -> &SyncOptions {
        &self.options
    }

    /// Match the commits the log holds past the last dispatch against the subscriptions, wake
    /// the sessions they touch, and publish the new `processed` timestamp.
    fn dispatch(&self, heard: Timestamp) {
        let log = self.runtime.store().commit_log();
        let mut woken = HashSet::new();
        let newest = {
            let mut subs = self.subscriptions.lock();
            let mut newest = subs.processed.max(heard);
            match log.since_complete(subs.processed) {
                Some(commits) => {
                    for (ts, writes) in &commits {
                        subs.mark_touched(writes, &mut woken);
                        newest = newest.max(*ts);
                    }
                }
                // Fell behind by more than the log holds: nobody can know what changed.
                None => {
                    subs.mark_everything(&mut woken);
                    newest = newest.max(self.runtime.store().latest_ts());
                }
            }
            subs.processed = newest;
            // Counted before the wake, so whoever hears from a woken session sees the count.
            self.metrics
                .commits_dispatched
                .fetch_add(1, Ordering::Relaxed);
            self.metrics
                .sessions_woken
                .fetch_add(woken.len() as u64, Ordering::Relaxed);
            subs.wake(&woken);
            newest
        };
        self.processed.send_if_modified(|current| {
            let newer = newest > *current;
            if newer {
                *current = newest;
            }
            newer
        });
    }

    /// A new session's handle: its id and the signal the dispatcher wakes it with.
    pub(crate) fn open_session(&self) -> (SessionId, Arc<SessionSignal>) {
        let id = self.next_session.fetch_add(1, Ordering::Relaxed);
        let signal = Arc::new(SessionSignal::default());
        self.subscriptions.lock().sessions.insert(
            id,
            SessionEntry {
                signal: signal.clone(),
                queries: HashMap::new(),
            },
        );
        (id, signal)
    }

    pub(crate) fn close_session(&self, session: SessionId) {
        let mut subs = self.subscriptions.lock();
        let queries: Vec<QueryId> = subs
            .sessions
            .get(&session)
            .map(|e| e.queries.keys().copied().collect())
            .unwrap_or_default();
        for query in queries {
            subs.unregister(Token { session, query });
        }
        subs.sessions.remove(&session);
    }

    /// Subscribe `query` of `session` to what it read at `read_ts` (replacing what it read
    /// before). Commits after `read_ts` that were already matched are checked here, so none is
    /// missed between the read and the registration.
    pub(crate) fn register(
        &self,
        session: SessionId,
        query: QueryId,
        read_set: Option<&ReadSet>,
        read_ts: Timestamp,
    ) {
        let token = Token { session, query };
        let mut subs = self.subscriptions.lock();
        subs.unregister(token);
        let Some(entry) = subs.sessions.get_mut(&session) else {
            return;
        };
        let registered = match read_set {
            None => Registered::AnyCommit,
            Some(reads) => Registered::Ranges(
                reads
                    .ranges
                    .iter()
                    .map(|r| {
                        (
                            r.index,
                            KeyRange {
                                start: r.start.clone(),
                                end: End::from_option(r.end.clone()),
                            },
                        )
                    })
                    .collect(),
            ),
        };
        let signal = entry.signal.clone();
        match &registered {
            Registered::AnyCommit => {
                subs.any_commit.insert(token);
            }
            Registered::Ranges(ranges) => {
                for (index, range) in ranges {
                    subs.by_index
                        .entry(*index)
                        .or_default()
                        .insert(range.clone(), token);
                }
            }
        }
        if let Some(entry) = subs.sessions.get_mut(&session) {
            entry.queries.insert(query, registered);
        }
        if read_ts < subs.processed {
            let log = self.runtime.store().commit_log();
            let missed = match read_set {
                Some(reads) => log.changed_between(read_ts, subs.processed, reads),
                None => true,
            };
            if missed {
                signal.dirty.lock().queries.insert(query);
                signal.notify.notify_one();
            }
        }
    }

    pub(crate) fn unregister(&self, session: SessionId, query: QueryId) {
        self.subscriptions
            .lock()
            .unregister(Token { session, query });
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn auth(&self) -> &dyn SyncAuth {
        self.auth.as_ref()
    }

    /// Wait until every commit up to `ts` has been matched against the subscriptions, at most
    /// `timeout`; whether it was. A write's caller waits here so its next read on this node, a
    /// query or a subscription, reflects the write.
    pub async fn until_processed(&self, ts: Timestamp, timeout: std::time::Duration) -> bool {
        let mut processed = self.processed.subscribe();
        let waited =
            tokio::time::timeout(timeout, processed.wait_for(|latest| *latest >= ts)).await;
        matches!(waited, Ok(Ok(_)))
    }

    /// Every commit up to here has been matched against the subscriptions (and the sessions it
    /// touched marked): a session's results reflect everything up to it once it re-runs its
    /// marked queries.
    /// Live subscriptions (queries subscribed over all sessions), for the health figures.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions
            .lock()
            .sessions
            .values()
            .map(|s| s.queries.len())
            .sum()
    }

    pub fn processed_ts(&self) -> Timestamp {
        *self.processed.borrow()
    }

    /// Run a subscribed query, sharing the result with every other subscriber that asks for the
    /// same query as the same identity before the next commit.
    pub async fn run_query(&self, query: &QueryKey, identity: &Identity) -> Arc<QueryOutcome> {
        let key = MemoKey {
            query: query.clone(),
            identity: identity_key(identity),
        };
        if self.options.memo_capacity == 0 {
            self.metrics
                .query_executions
                .fetch_add(1, Ordering::Relaxed);
            return Arc::new(self.execute(&query.path, &query.args, identity).await);
        }
        // Keyed by the store's latest commit: whoever asks while it is still the latest may
        // share the result (the query reads a snapshot at least that new).
        let latest = self.runtime.store().latest_ts();
        let entry = {
            let slot = self.memo.get(&key).map(|e| e.clone());
            match slot {
                Some(entry) if entry.ts == latest => entry,
                _ => {
                    if self.memo.len() >= self.options.memo_capacity {
                        self.memo.clear();
                    }
                    let fresh = Arc::new(MemoEntry {
                        ts: latest,
                        cell: OnceCell::new(),
                    });
                    self.memo.insert(key, fresh.clone());
                    fresh
                }
            }
        };
        entry
            .cell
            .get_or_init(|| async {
                self.metrics
                    .query_executions
                    .fetch_add(1, Ordering::Relaxed);
                Arc::new(self.execute(&query.path, &query.args, identity).await)
            })
            .await
            .clone()
    }

    async fn execute(&self, path: &str, args: &Value, identity: &Identity) -> QueryOutcome {
        let result = self
            .runtime
            .call(CallRequest {
                path: path.to_string(),
                args: args.clone(),
                expected_kind: Some(FunctionKind::Query),
                caller: Caller {
                    identity: identity.clone(),
                },
                read_at: ReadAt::Latest,
                request_id: tickethub_runtime::RequestId::generate(),
            })
            .await;
        QueryOutcome {
            result: match result.outcome {
                Ok(value) => Ok(EncodedValue::new(&value)),
                Err(error) => Err(crate::session::client_error(&error)),
            },
            log_lines: result.log_lines,
            read_set: result.read_set,
            ts: result
                .ts
                .unwrap_or_else(|| self.runtime.store().latest_ts()),
        }
    }
}

/// Memo entries are per identity, because a query may read `ctx.auth`.
fn identity_key(identity: &Identity) -> String {
    match identity {
        Identity::Anonymous => String::new(),
        Identity::User(user) => format!("user:{}", user.token_identifier),
        Identity::Admin => "admin".to_string(),
        Identity::InvalidToken(_) => "invalid".to_string(),
    }
}

/// Runs for the hub's life: each wake-up matches the new commits against the subscriptions.
async fn dispatch_loop(hub: Weak<SyncHub>, mut commits: watch::Receiver<Timestamp>) {
    while commits.changed().await.is_ok() {
        let heard = *commits.borrow_and_update();
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.dispatch(heard);
    }
}
