//! [`SyncHub`]: what all connections share. It hears every durable commit batch from the store,
//! keeps a bounded log of their write sets, wakes connections through a `watch` channel (so a slow
//! connection only ever sees the latest timestamp, never a queue of intermediate ones), and
//! memoises query results per snapshot so that 1,000 subscribers of one query cost one execution.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::Mutex;
use serde_json::value::RawValue;
use tickethub_runtime::{CallRequest, Caller, FunctionKind, Identity, ReadAt, Runtime};
use tickethub_store::{ReadSet, Timestamp, WriteSet};
use tickethub_value::Value;
use tokio::sync::{watch, OnceCell};

use crate::protocol::TokenType;

/// How many recent commits the hub remembers. A connection that falls further behind than this
/// re-runs all its queries once instead of replaying the log.
pub const COMMIT_LOG_CAPACITY: usize = 4096;
/// Memoised query results kept at most; the memo is cleared when it grows past this.
pub const MEMO_CAPACITY: usize = 16_384;

/// Turns an `Authenticate` message into an identity. The router implements it with the same
/// token verifier and admin key as `/api/*`.
pub trait SyncAuth: Send + Sync + 'static {
    fn authenticate<'a>(
        &'a self,
        token_type: TokenType,
        value: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Result<Identity, String>> + Send + 'a>>;
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default)]
pub struct SyncMetrics {
    /// Query executions done for subscriptions (memo hits excluded).
    pub query_executions: AtomicU64,
    pub connections_open: AtomicU64,
    pub transitions_sent: AtomicU64,
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

struct CommitEntry {
    ts: Timestamp,
    writes: Arc<WriteSet>,
}

/// What a connection gets when it asks which commits it missed.
pub enum Missed {
    /// The write sets of the commits after the asked timestamp, oldest first.
    Writes(Vec<Arc<WriteSet>>),
    /// The log no longer reaches back that far: treat everything as changed.
    TooOld,
}

pub struct SyncHub {
    runtime: Runtime,
    auth: Arc<dyn SyncAuth>,
    latest: watch::Sender<Timestamp>,
    log: Mutex<VecDeque<CommitEntry>>,
    memo: DashMap<MemoKey, Arc<MemoEntry>>,
    pub metrics: SyncMetrics,
}

impl SyncHub {
    /// Create the hub and subscribe it to the store's durable commits.
    pub fn new(runtime: Runtime, auth: Arc<dyn SyncAuth>) -> Arc<SyncHub> {
        let store = runtime.store().clone();
        let (latest, _) = watch::channel(store.latest_ts());
        let hub = Arc::new(SyncHub {
            runtime,
            auth,
            latest,
            log: Mutex::new(VecDeque::with_capacity(COMMIT_LOG_CAPACITY)),
            memo: DashMap::new(),
            metrics: SyncMetrics::default(),
        });
        let weak = Arc::downgrade(&hub);
        store.on_commit(Box::new(move |batch| {
            if let Some(hub) = weak.upgrade() {
                hub.record_commits(batch.iter().map(|c| (c.ts, c.writes.clone())));
            }
        }));
        hub
    }

    /// Called on the writer thread after each durable batch. Must stay cheap: it only appends to
    /// the log and bumps the watch value.
    fn record_commits(&self, commits: impl Iterator<Item = (Timestamp, Arc<WriteSet>)>) {
        let mut newest = None;
        {
            let mut log = self.log.lock();
            for (ts, writes) in commits {
                // Every commit moves the clock (a mutation's response waits for it), but only
                // commits that wrote something can change a query result.
                newest = newest.max(Some(ts));
                if writes.keys.is_empty() {
                    continue;
                }
                if log.len() == COMMIT_LOG_CAPACITY {
                    log.pop_front();
                }
                log.push_back(CommitEntry { ts, writes });
            }
        }
        if let Some(ts) = newest {
            self.latest.send_if_modified(|current| {
                let newer = ts > *current;
                if newer {
                    *current = ts;
                }
                newer
            });
        }
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub fn auth(&self) -> &dyn SyncAuth {
        self.auth.as_ref()
    }

    pub fn subscribe_commits(&self) -> watch::Receiver<Timestamp> {
        self.latest.subscribe()
    }

    /// The latest durable commit the hub has heard of.
    pub fn latest_ts(&self) -> Timestamp {
        *self.latest.borrow()
    }

    /// Write sets of the commits after `since`.
    pub fn missed_since(&self, since: Timestamp) -> Missed {
        let log = self.log.lock();
        match log.front() {
            // A full log whose oldest entry is newer than `since` may have dropped commits.
            Some(oldest) if log.len() == COMMIT_LOG_CAPACITY && oldest.ts > since => Missed::TooOld,
            _ => Missed::Writes(
                log.iter()
                    .filter(|c| c.ts > since)
                    .map(|c| c.writes.clone())
                    .collect(),
            ),
        }
    }

    /// Run a subscribed query, sharing the result with every other subscriber that asks for the
    /// same query as the same identity before the next commit.
    pub async fn run_query(&self, query: &QueryKey, identity: &Identity) -> Arc<QueryOutcome> {
        let key = MemoKey {
            query: query.clone(),
            identity: identity_key(identity),
        };
        let latest = self.latest_ts();
        let entry = {
            let slot = self.memo.get(&key).map(|e| e.clone());
            match slot {
                Some(entry) if entry.ts == latest => entry,
                _ => {
                    if self.memo.len() >= MEMO_CAPACITY {
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
