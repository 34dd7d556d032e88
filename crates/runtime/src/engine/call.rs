//! The call path: one function run as a query (on a snapshot), a mutation (a writer job) or an
//! action (a tokio task), with panics turned into [`FnError::Internal`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tickethub_store::{DocReader, ReadTxn, Store};
use tickethub_value::Value;
use tracing::Instrument;

use super::validate::{check_args, check_returns, snapshot_tables};
use super::{Execution, Inner, ReadAt};
use crate::ctx::{invoke_mutation, invoke_query, CallEnv, LogSink};
use crate::db::{Source, TxnCell, WriteOps};
use crate::registry::Handler;
use crate::writer::run_on_writer;
use crate::{ActionCtx, Auth, FnError, FunctionKind, FunctionSpec, Runtime};

/// A snapshot at the latest commit without blocking the async worker: a free reader is taken at
/// once; when every reader is lent out (pinned snapshots, long queries), the wait for one happens
/// on the blocking pool, so unrelated requests on this worker keep being served.
pub(crate) async fn read_snapshot(store: &Store) -> Result<ReadTxn, FnError> {
    // On Postgres even taking a free reader is a round trip (its BEGIN) with the blocking
    // client, which must never run on an async worker.
    if !store.reads_wait_on_network() {
        if let Some(txn) = store.try_read()? {
            return Ok(txn);
        }
    }
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.read())
        .await
        .map_err(|e| FnError::Internal(format!("waiting for a reader failed: {e}")))?
        .map_err(FnError::from)
}

pub(crate) use tickethub_store::panic_message;

pub(super) fn panicked(path: &str, payload: &(dyn std::any::Any + Send)) -> FnError {
    FnError::Internal(format!("{path} panicked: {}", panic_message(payload)))
}

pub(super) fn join_error(path: &str, e: tokio::task::JoinError) -> FnError {
    if e.is_panic() {
        panicked(path, &*e.into_panic())
    } else {
        FnError::Internal(format!("{path} was cancelled"))
    }
}

/// What a mutation job reports back from the writer thread.
pub(crate) struct MutationRun {
    pub(crate) result: Result<Value, FnError>,
    /// Jobs the mutation scheduled (the scheduler loop is woken when it commits).
    pub(crate) scheduled: usize,
}

/// Run a mutation's handler inside the writer's transaction, catching panics.
pub(crate) fn run_mutation_in_txn(
    inner: &Arc<Inner>,
    spec: &FunctionSpec,
    txn: &mut dyn WriteOps,
    auth: &Auth,
    logs: &LogSink,
    args: Value,
) -> MutationRun {
    let env = CallEnv::new(inner.clone(), logs.clone());
    let cell = TxnCell::new(txn);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        invoke_mutation(spec, &cell, auth, &env, args)
    }))
    .unwrap_or_else(|payload| Err(panicked(&spec.path, &*payload)));
    MutationRun {
        result,
        scheduled: env.scheduled.get(),
    }
}

impl Runtime {
    pub(crate) async fn run_spec(
        &self,
        spec: Arc<FunctionSpec>,
        args: Value,
        auth: Auth,
        read_at: ReadAt,
        logs: LogSink,
    ) -> Execution {
        match spec.kind {
            FunctionKind::Query => self.run_query(spec, args, auth, read_at, logs).await,
            FunctionKind::Mutation => self.run_mutation(spec, args, auth, logs).await,
            FunctionKind::Action | FunctionKind::HttpAction => {
                self.run_action(spec, args, auth, logs).await
            }
        }
    }

    async fn run_query(
        &self,
        spec: Arc<FunctionSpec>,
        args: Value,
        auth: Auth,
        read_at: ReadAt,
        logs: LogSink,
    ) -> Execution {
        let inner = self.inner.clone();
        let remote = inner.store.reads_wait_on_network();
        // On SQLite, queries run right here on the async worker: they are synchronous, bounded by
        // the per-transaction read caps, and typically take microseconds, so a hand-off to the
        // blocking pool would cost more than the query itself. Only waiting for a reader is
        // moved off the worker (see `read_snapshot`). On Postgres every read is a round trip:
        // the whole query runs on the blocking pool instead.
        let execute = async move {
            let run = |reader: &dyn DocReader| {
                let env = CallEnv::new(inner.clone(), logs);
                let call = || {
                    std::panic::catch_unwind(AssertUnwindSafe(|| {
                        invoke_query(&spec, Source::Snapshot(reader), &auth, &env, args)
                    }))
                    .unwrap_or_else(|payload| Err(panicked(&spec.path, &*payload)))
                };
                // `block_on` below enters the runtime, and the blocking Postgres client refuses
                // to run inside it ("Cannot start a runtime from within a runtime"):
                // `block_in_place` leaves the runtime's context for the query's reads.
                if remote {
                    tokio::task::block_in_place(call)
                } else {
                    call()
                }
            };
            match read_at {
                ReadAt::Latest => {
                    let txn = match read_snapshot(&inner.store).await {
                        Ok(txn) => txn,
                        Err(e) => return Execution::failed(e),
                    };
                    let outcome = run(&txn);
                    Execution { outcome, ts: Some(txn.ts()), read_set: Some(txn.read_set()) }
                }
                ReadAt::Pinned(ts) => match Runtime::pinned(&inner, ts) {
                    Ok(Some(pinned)) => {
                        let txn = pinned.lock();
                        // Its own read budget and read set on the shared snapshot.
                        let query = txn.new_query();
                        let outcome = run(&query);
                        Execution { outcome, ts: Some(ts), read_set: Some(query.read_set()) }
                    }
                    Ok(None) => match read_snapshot(&inner.store).await {
                        // Not pinned (expired or evicted), but nothing was committed since: the
                        // latest snapshot is the same one.
                        Ok(txn) if txn.ts() == ts => {
                            let outcome = run(&txn);
                            Execution { outcome, ts: Some(ts), read_set: Some(txn.read_set()) }
                        }
                        Ok(_) => Execution::failed(FnError::msg(format!(
                            "The snapshot at timestamp {} is no longer available; request a new timestamp",
                            ts.0
                        ))),
                        Err(e) => Execution::failed(e),
                    },
                    Err(e) => Execution::failed(e),
                },
            }
        };
        if remote {
            let handle = tokio::runtime::Handle::current();
            return tokio::task::spawn_blocking(move || handle.block_on(execute))
                .await
                .unwrap_or_else(|e| Execution::failed(join_error("a query", e)));
        }
        execute.await
    }

    async fn run_mutation(
        &self,
        spec: Arc<FunctionSpec>,
        args: Value,
        auth: Auth,
        logs: LogSink,
    ) -> Execution {
        let inner = self.inner.clone();
        let committed = run_on_writer(&self.inner.store, move |txn| {
            let run = run_mutation_in_txn(&inner, &spec, txn, &auth, &logs, args);
            run.result.map(|value| (value, run.scheduled))
        })
        .await;
        match committed {
            Ok(((value, scheduled), info)) => {
                if scheduled > 0 {
                    self.inner.sched.wake();
                }
                Execution {
                    outcome: Ok(value),
                    ts: Some(info.ts),
                    read_set: None,
                }
            }
            Err(e) => Execution::failed(e),
        }
    }

    async fn run_action(
        &self,
        spec: Arc<FunctionSpec>,
        args: Value,
        auth: Auth,
        logs: LogSink,
    ) -> Execution {
        let Handler::Action(handler) = &spec.handler else {
            return Execution::failed(FnError::Internal(format!("{} is not an action", spec.path)));
        };
        let checked = snapshot_tables(&self.inner.store, spec.args.as_ref())
            .and_then(|tables| check_args(&spec, &args, &tables));
        if let Err(e) = checked {
            return Execution::failed(e);
        }
        let ctx = ActionCtx::new(self.clone(), auth, logs);
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx, args))) {
            Ok(future) => future,
            Err(payload) => return Execution::failed(panicked(&spec.path, &*payload)),
        };
        let outcome = match tokio::spawn(future.in_current_span()).await {
            Ok(outcome) => outcome,
            Err(e) => Err(join_error(&spec.path, e)),
        };
        let outcome = outcome.and_then(|value| {
            let tables = snapshot_tables(&self.inner.store, spec.returns.as_ref())?;
            check_returns(&spec, &value, &tables)?;
            Ok(value)
        });
        Execution {
            outcome,
            ts: None,
            read_set: None,
        }
    }
}
