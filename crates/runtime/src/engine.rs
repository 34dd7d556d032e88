//! [`Runtime`]: runs calls. Queries run on a snapshot (on a blocking thread), mutations run as
//! jobs on the store's writer thread (serializable by construction, group-committed), actions run
//! on tokio. Also the scheduler loop, crons and the clock.
//!
//! Panics in handlers become [`FnError::Internal`]: a query's on its blocking thread, a
//! mutation's inside its job (caught so the writer thread survives, and rolled back), an
//! action's in its tokio task.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tickethub_store::{
    CommitInfo, DocReader, Outcome, ReadSet, ReadTxn, Store, StoreError, TableDef, Timestamp,
};
use tickethub_value::{IdTables, Validator, Value};
use tokio::sync::oneshot;

use crate::ctx::{invoke_mutation, invoke_query, CallEnv, LogSink};
use crate::db::{Source, TxnCell, WriteOps};
use crate::registry::{canonicalize_path, match_route, CronSpec, Handler, HttpRoute};
use crate::scheduler::SchedulerState;
use crate::{
    ActionCtx, App, Auth, FnError, FunctionKind, FunctionSpec, HttpRequest, HttpResponse, Identity,
    Visibility,
};

/// The runtime's clock. `Test` adds a manual offset to real time (`tickethub serve --test-clock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    System,
    Test,
}

#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    pub clock: Clock,
    /// Whether any auth provider is configured (exposed to apps as `ctx.auth.enabled()`).
    pub auth_enabled: bool,
    /// Environment values functions may read via `ctx.env(name)`.
    pub env: BTreeMap<String, String>,
    /// Test clock only: move the (persisted) test time forward by this many ms once, while the
    /// runtime is built, before the scheduler first looks for due work. Simulates downtime
    /// deterministically (`serve --test-clock-skip`). 0 = no skip.
    pub test_clock_skip_ms: f64,
    /// File storage (`ctx.storage`, upload URLs); `None` leaves it off.
    pub storage: Option<crate::storage::StorageConfig>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            clock: Clock::System,
            auth_enabled: false,
            env: BTreeMap::new(),
            test_clock_skip_ms: 0.0,
            storage: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Caller {
    pub identity: Identity,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        matches!(self.identity, Identity::Admin)
    }
}

/// Which snapshot a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadAt {
    Latest,
    /// A timestamp from [`Runtime::pin_snapshot`] (`/api/query_ts` → `/api/query_at_ts`).
    Pinned(Timestamp),
}

#[derive(Clone, Debug)]
pub struct CallRequest {
    /// As given by the client (canonicalized by the runtime).
    pub path: String,
    /// The args object (`args[0]` of the wire form).
    pub args: Value,
    /// `None` for `/api/function` (run whatever kind it is).
    pub expected_kind: Option<FunctionKind>,
    pub caller: Caller,
    pub read_at: ReadAt,
}

#[derive(Debug)]
pub struct CallResult {
    pub outcome: Result<Value, FnError>,
    /// `"[LOG] 'hi'"`-style lines.
    pub log_lines: Vec<String>,
    /// The snapshot a query read, or the commit ts of a mutation.
    pub ts: Option<Timestamp>,
    /// For queries: the index ranges read (live queries subscribe to them).
    pub read_set: Option<ReadSet>,
}

/// Who may be called: clients reach public functions only; functions, the scheduler and the
/// admin key reach internal ones too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    PublicOnly,
    Internal,
}

/// The result of running one function, before log lines are attached.
pub(crate) struct Execution {
    pub(crate) outcome: Result<Value, FnError>,
    pub(crate) ts: Option<Timestamp>,
    pub(crate) read_set: Option<ReadSet>,
}

impl Execution {
    fn failed(error: FnError) -> Execution {
        Execution {
            outcome: Err(error),
            ts: None,
            read_set: None,
        }
    }
}

/// Most snapshots kept open by [`Runtime::pin_snapshot`]. Each holds one of the store's reader
/// connections (4 by default) for up to [`PINNED_SNAPSHOT_TTL`], so this stays well below the
/// pool size: live queries must keep readers to run on.
pub const MAX_PINNED_SNAPSHOTS: usize = 2;
/// How long a pinned snapshot stays available.
pub const PINNED_SNAPSHOT_TTL: Duration = Duration::from_secs(30);

struct PinnedSnapshot {
    ts: Timestamp,
    txn: Arc<Mutex<ReadTxn>>,
    expires: Instant,
}

pub(crate) struct Inner {
    pub(crate) functions: HashMap<String, Arc<FunctionSpec>>,
    pub(crate) routes: Vec<HttpRoute>,
    pub(crate) crons: Vec<CronSpec>,
    pub(crate) store: Store,
    pub(crate) config: RuntimeConfig,
    /// Test clock offset in ms (always 0 with the system clock).
    clock_offset_ms: Mutex<f64>,
    pins: Mutex<VecDeque<PinnedSnapshot>>,
    pub(crate) sched: SchedulerState,
    pub(crate) storage: Option<Arc<crate::storage::StorageState>>,
}

fn system_now_ms() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    now.as_secs_f64() * 1000.0
}

impl Inner {
    pub(crate) fn now_ms(&self) -> f64 {
        system_now_ms() + *self.clock_offset_ms.lock()
    }

    /// Find a function. Unknown, malformed and (without access) internal paths all give the same
    /// NotFound text, naming the path as the caller wrote it.
    pub(crate) fn resolve(
        &self,
        path: &str,
        access: Access,
        expected: Option<FunctionKind>,
    ) -> Result<Arc<FunctionSpec>, FnError> {
        let not_found = || FnError::NotFound(path.to_string());
        let canonical = canonicalize_path(path).map_err(|_| not_found())?;
        let spec = self.functions.get(&canonical).ok_or_else(not_found)?;
        if spec.visibility == Visibility::Internal && access == Access::PublicOnly {
            return Err(not_found());
        }
        if let Some(expected) = expected {
            if expected != spec.kind {
                return Err(FnError::WrongKind {
                    path: path.to_string(),
                    expected,
                    actual: spec.kind,
                });
            }
        }
        Ok(spec.clone())
    }
}

/// The test clock's offset at start-up: the stored one moved forward by `skip_ms` (persisted
/// before anything runs, so the skip happens once even if the process dies right after).
fn restore_test_offset(store: &Store, skip_ms: f64) -> Result<f64, FnError> {
    if !(skip_ms.is_finite() && skip_ms >= 0.0) {
        return Err(FnError::msg(format!(
            "test_clock_skip_ms must be a non-negative number of ms, got {skip_ms}"
        )));
    }
    let stored = crate::test_clock::load(&store.read()?)?;
    if skip_ms == 0.0 {
        return Ok(stored);
    }
    let offset = stored + skip_ms;
    store
        .mutate(move |txn| -> Result<(), FnError> { Ok(crate::test_clock::save(txn, offset)?) })?;
    tracing::info!(
        skipped_ms = skip_ms,
        offset_ms = offset,
        "test clock moved forward at start-up"
    );
    Ok(offset)
}

/// Serialize call args; they must form an object.
pub(crate) fn args_value(args: impl Serialize) -> Result<Value, FnError> {
    match tickethub_value::to_value(&args) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(FnError::ArgumentValidation(format!(
            "Arguments must be an object, got {}",
            other.type_name()
        ))),
        Err(e) => Err(FnError::ArgumentValidation(e.to_string())),
    }
}

pub(crate) fn check_args(
    spec: &FunctionSpec,
    args: &Value,
    tables: &dyn IdTables,
) -> Result<(), FnError> {
    match &spec.args {
        Some(validator) => validator
            .check(args, tables)
            .map_err(|e| FnError::ArgumentValidation(e.to_string())),
        None => Ok(()),
    }
}

pub(crate) fn check_returns(
    spec: &FunctionSpec,
    result: &Value,
    tables: &dyn IdTables,
) -> Result<(), FnError> {
    match &spec.returns {
        Some(validator) => validator
            .check(result, tables)
            .map_err(|e| FnError::ReturnsValidation(e.to_string())),
        None => Ok(()),
    }
}

/// Whether checking against `v` may need table numbers (`v.id(..)` somewhere inside).
fn mentions_id(v: &Validator) -> bool {
    match v {
        Validator::Id(_) => true,
        Validator::Array(inner) | Validator::Optional(inner) => mentions_id(inner),
        Validator::Object(fields) => fields.values().any(mentions_id),
        Validator::Record(k, val) => mentions_id(k) || mentions_id(val),
        Validator::Union(options) => options.iter().any(mentions_id),
        Validator::Null
        | Validator::Float64
        | Validator::Int64
        | Validator::Boolean
        | Validator::String
        | Validator::Bytes
        | Validator::Literal(_)
        | Validator::Any => false,
    }
}

/// Table numbers for validating action args and results: a fresh snapshot, opened only when a
/// validator mentions `v.id`.
struct SnapshotTables(Option<ReadTxn>);

impl IdTables for SnapshotTables {
    fn table_number(&self, table: &str) -> Option<tickethub_value::TableNumber> {
        self.0.as_ref().and_then(|txn| txn.table_number(table))
    }
}

fn snapshot_tables(
    store: &Store,
    validator: Option<&Validator>,
) -> Result<SnapshotTables, FnError> {
    if validator.is_some_and(mentions_id) {
        Ok(SnapshotTables(Some(store.read()?)))
    } else {
        Ok(SnapshotTables(None))
    }
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

fn panicked(path: &str, payload: &(dyn std::any::Any + Send)) -> FnError {
    FnError::Internal(format!("{path} panicked: {}", panic_message(payload)))
}

fn join_error(path: &str, e: tokio::task::JoinError) -> FnError {
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

/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl Runtime {
    /// Engine-owned tables to add to the schema before opening the store (`_scheduled_functions`,
    /// cron state).
    pub fn system_tables() -> Vec<TableDef> {
        let mut tables = crate::scheduler::system_tables();
        tables.push(crate::test_clock::system_table());
        tables.extend(crate::storage::system_tables());
        tables
    }

    /// Build a runtime. Panics where [`Runtime::try_new`] fails (only with the test clock: the
    /// store could not be read or written, or the start-up skip is not a valid number).
    pub fn new(app: App, store: Store, config: RuntimeConfig) -> Runtime {
        Runtime::try_new(app, store, config)
            .unwrap_or_else(|e| panic!("could not start the runtime: {e}"))
    }

    /// Build a runtime: the app's functions plus the built-in `_system/*` queries. With the test
    /// clock this reads the persisted offset and applies `test_clock_skip_ms` (blocking on the
    /// store: call it off the async threads).
    pub fn try_new(app: App, store: Store, config: RuntimeConfig) -> Result<Runtime, FnError> {
        let offset = match config.clock {
            Clock::System if config.test_clock_skip_ms != 0.0 => {
                return Err(FnError::msg(
                    "test_clock_skip_ms needs the test clock (serve --test-clock)",
                ));
            }
            Clock::System => 0.0,
            Clock::Test => restore_test_offset(&store, config.test_clock_skip_ms)?,
        };
        let storage = match &config.storage {
            Some(storage) => Some(crate::storage::open(storage, &store)?),
            None => None,
        };
        let mut system = App::system();
        crate::scheduler::register_system_functions(&mut system);
        crate::storage::register_system_functions(&mut system);
        // The app cannot register `_system/` paths (App refuses them), so nothing is shadowed.
        let functions = app
            .functions
            .into_iter()
            .chain(system.functions)
            .map(|(path, spec)| (path, Arc::new(spec)))
            .collect();
        Ok(Runtime {
            inner: Arc::new(Inner {
                functions,
                routes: app.routes,
                crons: app.crons,
                store,
                config,
                clock_offset_ms: Mutex::new(offset),
                pins: Mutex::new(VecDeque::new()),
                sched: SchedulerState::default(),
                storage,
            }),
        })
    }

    /// Start the scheduler and cron loops on the current tokio runtime. A cron that was due while
    /// the server was down runs once.
    pub fn start_background(&self) {
        crate::scheduler::start_background(self);
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Run a query, mutation or action. Function failures are in `outcome`, never panics.
    pub async fn call(&self, request: CallRequest) -> CallResult {
        let access = if request.caller.is_admin() {
            Access::Internal
        } else {
            Access::PublicOnly
        };
        let auth = Auth::new(request.caller.identity, self.inner.config.auth_enabled);
        let logs = LogSink::default();
        let execution = self
            .execute_at(
                request.path,
                request.args,
                auth,
                access,
                request.expected_kind,
                request.read_at,
                logs.clone(),
            )
            .await;
        CallResult {
            outcome: execution.outcome,
            log_lines: logs.lines(),
            ts: execution.ts,
            read_set: execution.read_set,
        }
    }

    pub(crate) fn execute(
        &self,
        path: String,
        args: Value,
        auth: Auth,
        access: Access,
        expected: Option<FunctionKind>,
        logs: LogSink,
    ) -> BoxFuture<Execution> {
        self.execute_at(path, args, auth, access, expected, ReadAt::Latest, logs)
    }

    /// Resolve and run one function, logging one line about it. Boxed: actions call back in.
    #[allow(clippy::too_many_arguments)]
    fn execute_at(
        &self,
        path: String,
        args: Value,
        auth: Auth,
        access: Access,
        expected: Option<FunctionKind>,
        read_at: ReadAt,
        logs: LogSink,
    ) -> BoxFuture<Execution> {
        let rt = self.clone();
        Box::pin(async move {
            let started = Instant::now();
            let spec = match rt.inner.resolve(&path, access, expected) {
                Ok(spec) => spec,
                Err(e) => {
                    log_call(&path, None, started, Some(&e));
                    return Execution::failed(e);
                }
            };
            let execution = rt.run_spec(spec.clone(), args, auth, read_at, logs).await;
            let error = execution.outcome.as_ref().err();
            log_call(&spec.path, Some(spec.kind), started, error);
            execution
        })
    }

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
        // Queries run right here on the async worker: they are synchronous, bounded by the
        // per-transaction read caps, and typically take microseconds, so a hand-off to the
        // blocking pool would cost more than the query itself.
        let execute = move || {
            let run = |reader: &dyn DocReader| {
                let env = CallEnv::new(inner.clone(), logs);
                std::panic::catch_unwind(AssertUnwindSafe(|| {
                    invoke_query(&spec, Source::Snapshot(reader), &auth, &env, args)
                }))
                .unwrap_or_else(|payload| Err(panicked(&spec.path, &*payload)))
            };
            match read_at {
                ReadAt::Latest => {
                    let txn = match inner.store.read() {
                        Ok(txn) => txn,
                        Err(e) => return Execution::failed(e.into()),
                    };
                    let outcome = run(&txn);
                    Execution { outcome, ts: Some(txn.ts()), read_set: Some(txn.read_set()) }
                }
                ReadAt::Pinned(ts) => match Runtime::pinned(&inner, ts) {
                    Ok(Some(pinned)) => {
                        let txn = pinned.lock();
                        // The pinned transaction keeps every earlier query's reads: report ours.
                        let before = txn.read_set().ranges.len();
                        let outcome = run(&*txn);
                        let ranges = txn.read_set().ranges.split_off(before);
                        Execution { outcome, ts: Some(ts), read_set: Some(ReadSet { ranges }) }
                    }
                    Ok(None) => match inner.store.read() {
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
                        Err(e) => Execution::failed(e.into()),
                    },
                    Err(e) => Execution::failed(e),
                },
            }
        };
        execute()
    }

    async fn run_mutation(
        &self,
        spec: Arc<FunctionSpec>,
        args: Value,
        auth: Auth,
        logs: LogSink,
    ) -> Execution {
        let inner = self.inner.clone();
        let (sender, receiver) = oneshot::channel();
        let slot: Arc<Mutex<Option<MutationRun>>> = Arc::new(Mutex::new(None));
        let job_slot = slot.clone();
        self.inner.store.submit(
            Box::new(move |txn| {
                let run = run_mutation_in_txn(&inner, &spec, txn, &auth, &logs, args);
                let outcome = if run.result.is_ok() {
                    Outcome::Commit
                } else {
                    Outcome::Rollback
                };
                *job_slot.lock() = Some(run);
                outcome
            }),
            Box::new(move |commit: Result<CommitInfo, StoreError>| {
                let _ = sender.send(commit);
            }),
        );
        let commit = receiver.await;
        let run = slot.lock().take();
        match (run, commit) {
            (
                Some(MutationRun {
                    result: Ok(value),
                    scheduled,
                }),
                Ok(Ok(info)),
            ) => {
                if scheduled > 0 {
                    self.inner.sched.wake();
                }
                Execution {
                    outcome: Ok(value),
                    ts: Some(info.ts),
                    read_set: None,
                }
            }
            (Some(MutationRun { result: Err(e), .. }), _) => Execution::failed(e),
            (_, Ok(Err(e))) => Execution::failed(e.into()),
            (None, Ok(Ok(_))) => {
                Execution::failed(FnError::Internal("the mutation job did not run".into()))
            }
            (_, Err(_)) => {
                Execution::failed(FnError::Internal("the store dropped the mutation".into()))
            }
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
        let outcome = match tokio::spawn(future).await {
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

    /// Keep a snapshot open for a while (bounded count, expiring) and return its timestamp.
    pub fn pin_snapshot(&self) -> Result<Timestamp, FnError> {
        let txn = self.inner.store.read()?;
        let ts = txn.ts();
        let mut pins = self.inner.pins.lock();
        let now = Instant::now();
        pins.retain(|p| p.expires > now);
        if let Some(existing) = pins.iter_mut().find(|p| p.ts == ts) {
            existing.expires = now + PINNED_SNAPSHOT_TTL;
            return Ok(ts);
        }
        if pins.len() >= MAX_PINNED_SNAPSHOTS {
            pins.pop_front();
        }
        pins.push_back(PinnedSnapshot {
            ts,
            txn: Arc::new(Mutex::new(txn)),
            expires: now + PINNED_SNAPSHOT_TTL,
        });
        Ok(ts)
    }

    fn pinned(inner: &Inner, ts: Timestamp) -> Result<Option<Arc<Mutex<ReadTxn>>>, FnError> {
        let mut pins = inner.pins.lock();
        let now = Instant::now();
        pins.retain(|p| p.expires > now);
        Ok(pins.iter().find(|p| p.ts == ts).map(|p| p.txn.clone()))
    }

    /// Route and run an HTTP action. `None` when no route matches (the caller answers 404).
    /// A failing handler gives HTTP 500 `{"code": "[Request ID: <id>] Server Error: ...",
    /// "trace": ...}`; internal failures say only "Server Error" (the details are logged).
    pub async fn http_action(&self, request: HttpRequest, caller: Caller) -> Option<HttpResponse> {
        let route = match_route(&self.inner.routes, request.method(), request.uri().path())?;
        let handler = route.handler.clone();
        let is_head = request.method() == http::Method::HEAD;
        let label = format!("{} {}", request.method(), request.uri().path());
        let started = Instant::now();
        let logs = LogSink::default();
        let ctx = ActionCtx::new(
            self.clone(),
            Auth::new(caller.identity, self.inner.config.auth_enabled),
            logs,
        );
        let result = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(ctx, request))) {
            Ok(future) => tokio::spawn(future)
                .await
                .unwrap_or_else(|e| Err(join_error(&label, e))),
            Err(payload) => Err(panicked(&label, &*payload)),
        };
        log_call(
            &label,
            Some(FunctionKind::HttpAction),
            started,
            result.as_ref().err(),
        );
        let mut response = match result {
            Ok(response) => response,
            Err(e) => server_error_response(&label, &e),
        };
        if is_head {
            *response.body_mut() = bytes::Bytes::new();
        }
        Some(response)
    }

    /// Test clock only: move time forward, run every scheduled job and cron that became due, and
    /// return the new time in ms once they have finished.
    pub async fn advance_time(&self, ms: f64) -> Result<f64, FnError> {
        if self.inner.config.clock != Clock::Test {
            return Err(FnError::msg(
                "advance_time needs the test clock (serve --test-clock)",
            ));
        }
        if !(ms.is_finite() && ms >= 0.0) {
            return Err(FnError::msg(format!(
                "advance_time takes a non-negative number of ms, got {ms}"
            )));
        }
        *self.inner.clock_offset_ms.lock() += ms;
        if ms > 0.0 {
            // Persist before running what became due, so no job completes at a test time a
            // restart would then place in the future. The job stores the offset current when it
            // runs (offsets only grow, and `save` never lowers the stored one).
            let inner = self.inner.clone();
            crate::scheduler::system_mutation(self, move |txn| {
                let offset = *inner.clock_offset_ms.lock();
                Ok(crate::test_clock::save(txn, offset)?)
            })
            .await?;
        }
        crate::scheduler::run_until_idle(self).await?;
        Ok(self.now_ms())
    }

    pub fn now_ms(&self) -> f64 {
        self.inner.now_ms()
    }

    /// Stop the background loops and wait for in-flight scheduled jobs.
    pub async fn shutdown(&self) {
        crate::scheduler::shutdown(self).await;
    }
}

/// Build the 500 response of a failed HTTP action, logging the real error with a request id.
fn server_error_response(label: &str, error: &FnError) -> HttpResponse {
    let request_id = format!("{:016x}", rand::random::<u64>());
    let (code, trace) = if error.is_user_visible() {
        let kind = if matches!(error, FnError::Convex { .. }) {
            "ConvexError"
        } else {
            "Error"
        };
        let uncaught = format!("Uncaught {kind}: {error}");
        (
            format!("[Request ID: {request_id}] Server Error: {uncaught}"),
            uncaught,
        )
    } else {
        tracing::error!(request_id, route = label, error = %error, "HTTP action failed with an internal error");
        (
            format!("[Request ID: {request_id}] Server Error"),
            String::new(),
        )
    };
    let body = serde_json::json!({ "code": code, "trace": trace }).to_string();
    http::Response::builder()
        .status(http::StatusCode::INTERNAL_SERVER_ERROR)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(bytes::Bytes::from(body))
        .unwrap_or_else(|_| http::Response::new(bytes::Bytes::new()))
}

/// Milliseconds with three decimals, formatted only if the log line is emitted.
struct Millis(std::time::Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.0.as_secs_f64() * 1000.0)
    }
}

/// One tracing line per call: INFO on success, WARN for user errors, ERROR for internal ones.
fn log_call(path: &str, kind: Option<FunctionKind>, started: Instant, error: Option<&FnError>) {
    let duration_ms = Millis(started.elapsed());
    let kind = kind.map_or("-", |k| k.as_str());
    match error {
        None => {
            tracing::info!(path, kind, duration_ms = %duration_ms, outcome = "success", "function call")
        }
        Some(e) if e.is_user_visible() => {
            tracing::warn!(path, kind, duration_ms = %duration_ms, outcome = e.code(), error = %e, "function call")
        }
        Some(e) => {
            tracing::error!(path, kind, duration_ms = %duration_ms, outcome = e.code(), error = %e, "function call")
        }
    }
}
