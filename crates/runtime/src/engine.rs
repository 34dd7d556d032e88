//! [`Runtime`]: runs calls. Queries run on a snapshot (on a blocking thread), mutations run as
//! jobs on the store's writer thread (serializable by construction, group-committed), actions run
//! on tokio. Also the scheduler loop, crons and the clock.
//!
//! Panics in handlers become [`FnError::Internal`]: a query's on its blocking thread, a
//! mutation's inside its job (caught so the writer thread survives, and rolled back), an
//! action's in its tokio task.
//!
//! - `call`: the call path (queries, mutations, actions); `pinned`: pinned snapshots;
//!   `http_action`: routing and running HTTP actions; `validate`: argument and result checks.

mod call;
mod http_action;
mod pinned;
mod validate;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tickethub_store::{ReadSet, Store, TableDef, Timestamp};
use tickethub_value::Value;
use tracing::Instrument;

pub(crate) use call::run_mutation_in_txn;
use pinned::PinnedSnapshot;
pub(crate) use validate::{args_value, check_args, check_returns};

use crate::ctx::LogSink;
use crate::registry::{canonicalize_path, CronSpec, HttpRoute};
use crate::scheduler::SchedulerState;
use crate::{App, Auth, FnError, FunctionKind, FunctionSpec, Identity, RequestId, Visibility};

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
    /// How long finished scheduled jobs are kept, and how their purge is paced.
    pub scheduled_jobs: crate::scheduler::JobRetention,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            clock: Clock::System,
            auth_enabled: false,
            env: BTreeMap::new(),
            test_clock_skip_ms: 0.0,
            storage: None,
            scheduled_jobs: crate::scheduler::JobRetention::default(),
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
    /// Made by the router (one per client request); in the call's span and its error texts.
    pub request_id: RequestId,
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

pub(crate) struct Inner {
    pub(crate) functions: HashMap<String, Arc<FunctionSpec>>,
    /// Functions pushed with `npx convex deploy` (JavaScript), beside the built-in ones and
    /// replaced whole by each push. Never holds a path of `functions` (refused at push time).
    pub(crate) pushed: parking_lot::RwLock<Arc<HashMap<String, Arc<FunctionSpec>>>>,
    /// The pushed `http.js` routes; a request tries the built-in routes first.
    pub(crate) pushed_routes: parking_lot::RwLock<Arc<Vec<HttpRoute>>>,
    /// The pushed `crons.js` crons, beside the built-in ones (`Runtime::crons`).
    pub(crate) pushed_crons: parking_lot::RwLock<Arc<Vec<CronSpec>>>,
    pub(crate) routes: Vec<HttpRoute>,
    pub(crate) crons: Vec<CronSpec>,
    pub(crate) store: Store,
    pub(crate) config: RuntimeConfig,
    /// Test clock offset in ms (always 0 with the system clock).
    clock_offset_ms: Mutex<f64>,
    pins: Mutex<VecDeque<PinnedSnapshot>>,
    pub(crate) sched: SchedulerState,
    pub(crate) storage: Option<Arc<crate::storage::StorageState>>,
    /// The function log and health figures (dashboard, `/metrics`).
    pub(crate) observer: Arc<crate::observe::Observer>,
    /// The deployment's environment variables (`_environment_variables`), mirrored.
    pub(crate) env_vars: crate::env_vars::EnvVars,
    /// `ctx.auth.enabled()`: starts as `config.auth_enabled`; the server flips it when a
    /// deployment variable turns auth on or off (`CLERK_JWT_ISSUER_DOMAIN`).
    pub(crate) auth_enabled: std::sync::atomic::AtomicBool,
    /// Cluster mode: how a follower sends mutations and actions to the leader (set by the
    /// server; the HTTP side lives in the router).
    forwarder: std::sync::OnceLock<Arc<dyn Forwarder>>,
}

/// Sends a top-level mutation or action to the cluster's leader and returns its answer
/// (cluster mode, on a follower). The leader's commit timestamp comes back in
/// [`CallResult::ts`], so a sync session waits until this node has seen the commit.
pub trait Forwarder: Send + Sync {
    fn forward(
        &self,
        request: CallRequest,
        kind: FunctionKind,
    ) -> futures_util::future::BoxFuture<'static, CallResult>;
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

    /// Whether an auth provider is configured now (`ctx.auth.enabled()`).
    pub(crate) fn auth_enabled(&self) -> bool {
        self.auth_enabled.load(std::sync::atomic::Ordering::Relaxed)
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
        let pushed;
        let spec = match self.functions.get(&canonical) {
            Some(spec) => spec,
            None => {
                pushed = self.pushed.read().clone();
                pushed.get(&canonical).ok_or_else(not_found)?
            }
        };
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

/// Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<Inner>,
}

impl Runtime {
    /// Engine-owned tables to add to the schema before opening the store (`_scheduled_functions`,
    /// cron state).
    pub fn system_tables() -> Vec<TableDef> {
        let mut tables = crate::scheduler::system_tables();
        tables.push(crate::test_clock::system_table());
        tables.extend(crate::storage::system_tables());
        tables.push(crate::env_vars::system_table());
        tables.push(crate::pushed::system_table());
        tables.extend(crate::snapshot::service::system_tables());
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
        let env_vars = crate::env_vars::EnvVars::load(&store.read()?)?;
        let storage = match &config.storage {
            Some(storage) => Some(crate::storage::open(storage, &store)?),
            None => None,
        };
        let observer = Arc::new(crate::observe::Observer::new(
            *tickethub_knobs::FUNCTION_LOG_CAPACITY,
            *tickethub_knobs::HEALTH_SAMPLES_KEPT,
        ));
        let on_commit = observer.clone();
        store.on_commit(Box::new(move |batch| {
            if let Some(last) = batch.last() {
                on_commit.record_batch(batch.len(), last.ts);
            }
        }));
        let mut system = App::system();
        crate::scheduler::register_system_functions(&mut system);
        crate::storage::register_system_functions(&mut system);
        crate::env_vars::register_system_functions(&mut system);
        crate::cli::register_system_functions(&mut system);
        crate::snapshot::service::register_system_functions(&mut system);
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
                pushed: Default::default(),
                pushed_routes: Default::default(),
                pushed_crons: Default::default(),
                routes: app.routes,
                crons: app.crons,
                store,
                clock_offset_ms: Mutex::new(offset),
                pins: Mutex::new(VecDeque::new()),
                sched: SchedulerState::default(),
                storage,
                observer,
                env_vars,
                auth_enabled: std::sync::atomic::AtomicBool::new(config.auth_enabled),
                forwarder: std::sync::OnceLock::new(),
                config,
            }),
        })
    }

    /// Start the scheduler and cron loops on the current tokio runtime. A cron that was due while
    /// the server was down runs once.
    pub fn start_background(&self) {
        crate::scheduler::start_background(self);
        self.start_health_sampler();
    }

    /// Sample the health figures every `HEALTH_SAMPLE_INTERVAL` into the observer's ring. The
    /// task holds the runtime weakly and ends when the runtime is dropped.
    fn start_health_sampler(&self) {
        let weak = Arc::downgrade(&self.inner);
        let every = *tickethub_knobs::HEALTH_SAMPLE_INTERVAL;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let rt = Runtime { inner };
                // The database's size is a query on Postgres (the blocking client, which must not
                // run on an async worker): sampled on the blocking pool.
                if rt.store().reads_wait_on_network() {
                    let _ = tokio::task::spawn_blocking(move || rt.sample_health()).await;
                } else {
                    rt.sample_health();
                }
            }
        });
    }

    /// Take one health sample now (the sampler does it periodically; tests call it directly).
    pub fn sample_health(&self) -> Arc<crate::observe::HealthSample> {
        let db_bytes = self.inner.store.disk_bytes() as f64;
        self.inner.observer.sample(system_now_ms(), db_bytes)
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Convex's `db.normalizeId(table, idString)`: the ID when `id` is a well-formed ID of
    /// `table`, `None` otherwise (also for an unknown table, or a system table other than
    /// `_storage` and `_scheduled_functions`, which functions never see).
    pub fn normalize_id(&self, table: &str, id: &str) -> Option<tickethub_value::DocumentId> {
        let visible = !table.starts_with('_')
            || table == crate::storage::STORAGE_TABLE
            || table == crate::scheduler::SCHEDULED_FUNCTIONS_TABLE;
        let number = self.inner.store.table_number(table).filter(|_| visible)?;
        tickethub_value::DocumentId::decode(id)
            .ok()
            .filter(|decoded| decoded.table == number)
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.inner.config
    }

    /// Tell functions whether an auth provider is configured (`ctx.auth.enabled()`): the server
    /// calls it when its JWT verifier is rebuilt from a changed deployment variable.
    pub fn set_auth_enabled(&self, enabled: bool) {
        self.inner
            .auth_enabled
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Cluster mode: install how this node forwards writes to the leader (once).
    pub fn set_forwarder(&self, forwarder: Arc<dyn Forwarder>) {
        let _ = self.inner.forwarder.set(forwarder);
    }

    /// Run a query, mutation or action. Function failures are in `outcome`, never panics.
    pub async fn call(&self, request: CallRequest) -> CallResult {
        let access = if request.caller.is_admin() {
            Access::Internal
        } else {
            Access::PublicOnly
        };
        // A follower has no writer: mutations and actions (which may call mutations) run on the
        // leader, and the caller gets the leader's answer.
        if self.inner.store.role() == tickethub_store::NodeRole::Follower {
            if let Some(forwarder) = self.inner.forwarder.get() {
                let kind = self
                    .inner
                    .resolve(&request.path, access, request.expected_kind)
                    .map(|spec| spec.kind);
                if let Ok(kind @ (FunctionKind::Mutation | FunctionKind::Action)) = kind {
                    return forwarder.forward(request, kind).await;
                }
            }
        }
        let auth = Auth::new(request.caller.identity, self.inner.auth_enabled());
        let logs = LogSink::default();
        // No span of its own: `execute_at`'s `function_call` span carries the request id.
        let execution = self
            .execute_at(
                request.path,
                request.args,
                auth,
                access,
                request.expected_kind,
                request.read_at,
                logs.clone(),
                Record::TopLevel(Some(request.request_id)),
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
    ) -> BoxFuture<'static, Execution> {
        self.execute_at(
            path,
            args,
            auth,
            access,
            expected,
            ReadAt::Latest,
            logs,
            Record::Nested,
        )
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
        record: Record,
    ) -> BoxFuture<'static, Execution> {
        let rt = self.clone();
        // One span per function call (nested calls from actions get their own, inside it), at
        // DEBUG: at the default INFO filter a span costs thousands of instructions per call
        // (issue #16's profile), and the lines that matter there, failures, name the request id
        // themselves.
        let request_id = match &record {
            Record::TopLevel(Some(id)) => Some(id.clone()),
            _ => None,
        };
        let span = tracing::debug_span!(
            "function_call",
            path = %path,
            kind = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        if let Some(id) = &request_id {
            span.record("request_id", tracing::field::display(id));
        }
        Box::pin(
            async move {
                let started = Instant::now();
                let spec = match rt.inner.resolve(&path, access, expected) {
                    Ok(spec) => spec,
                    Err(e) => {
                        log_call(&path, None, started, Some(&e), request_id.as_ref());
                        if let Record::TopLevel(request_id) = record {
                            let path = Arc::from(path.as_str());
                            rt.record_call(path, None, started, Some(&e), &logs, request_id);
                        }
                        return Execution::failed(e);
                    }
                };
                tracing::Span::current().record("kind", spec.kind.as_str());
                let execution = rt
                    .run_spec(spec.clone(), args, auth, read_at, logs.clone())
                    .await;
                let error = execution.outcome.as_ref().err();
                log_call(
                    &spec.path,
                    Some(spec.kind),
                    started,
                    error,
                    request_id.as_ref(),
                );
                if let Record::TopLevel(request_id) = record {
                    rt.record_call(
                        spec.path.clone(),
                        Some(spec.kind),
                        started,
                        error,
                        &logs,
                        request_id,
                    );
                }
                execution
            }
            .instrument(span),
        )
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

    /// Every registered function (the app's and the built-in `_system/*` ones), sorted by path.
    pub fn functions(&self) -> Vec<Arc<FunctionSpec>> {
        let mut all: Vec<_> = self.inner.functions.values().cloned().collect();
        all.extend(self.inner.pushed.read().values().cloned());
        all.sort_by(|a, b| a.path.cmp(&b.path));
        all
    }

    /// The canonical path of the function `path` names (built-in or pushed, internal ones
    /// too), or why there is none: what a function handle stands for.
    pub fn function_path(&self, path: &str) -> Result<String, FnError> {
        self.inner
            .resolve(path, Access::Internal, None)
            .map(|spec| spec.path.to_string())
    }

    /// Whether a built-in (compiled-in or `_system/`) function has this canonical path: pushed
    /// code may not use it.
    pub fn is_builtin_function(&self, canonical_path: &str) -> bool {
        self.inner.functions.contains_key(canonical_path)
    }

    /// Replace the pushed functions with `app`'s. A path the built-in app already defines is
    /// refused, naming it; then nothing changes.
    pub fn install_pushed(&self, app: App) -> Result<(), FnError> {
        if let Some(clash) = app
            .functions
            .keys()
            .find(|p| self.inner.functions.contains_key(*p))
        {
            return Err(FnError::msg(format!(
                "The pushed function `{clash}` has the same path as a built-in function of this server; rename it."
            )));
        }
        if let Some(clash) = app
            .routes
            .iter()
            .find(|pushed| self.inner.routes.iter().any(|r| r.route == pushed.route))
        {
            return Err(FnError::msg(format!(
                "The pushed HTTP route {} {} is already a built-in route of this server; change its path.",
                clash.route.method,
                clash.route.path
            )));
        }
        if let Some(clash) = app
            .crons
            .iter()
            .find(|pushed| self.inner.crons.iter().any(|c| c.name == pushed.name))
        {
            return Err(FnError::msg(format!(
                "The pushed cron `{}` has the same name as a built-in cron of this server; rename it.",
                clash.name
            )));
        }
        let functions = app
            .functions
            .into_iter()
            .map(|(path, spec)| (path, Arc::new(spec)))
            .collect();
        *self.inner.pushed.write() = Arc::new(functions);
        *self.inner.pushed_routes.write() = Arc::new(app.routes);
        *self.inner.pushed_crons.write() = Arc::new(app.crons);
        // The scheduler brings `_cron_jobs` in line on its next pass.
        self.inner.sched.crons_changed();
        Ok(())
    }

    /// Every cron: the built-in app's, then the pushed ones.
    pub(crate) fn crons(&self) -> Vec<CronSpec> {
        let pushed = self.inner.pushed_crons.read().clone();
        self.inner
            .crons
            .iter()
            .chain(pushed.iter())
            .cloned()
            .collect()
    }

    /// The HTTP routes: the app's in registration order, then the pushed ones.
    pub fn routes(&self) -> Vec<crate::Route> {
        let pushed = self.inner.pushed_routes.read().clone();
        self.inner
            .routes
            .iter()
            .chain(pushed.iter())
            .map(|r| r.route.clone())
            .collect()
    }

    /// The function log and health figures of this deployment.
    pub fn observer(&self) -> &Arc<crate::observe::Observer> {
        &self.inner.observer
    }

    /// Append a finished top-level call to the function log and count it.
    pub(crate) fn record_call(
        &self,
        path: Arc<str>,
        kind: Option<FunctionKind>,
        started: Instant,
        error: Option<&FnError>,
        logs: &LogSink,
        request_id: Option<RequestId>,
    ) {
        self.inner.observer.record_call(
            crate::observe::FinishedCall {
                path,
                kind,
                started,
                error,
                log_lines: logs.lines(),
                request_id: request_id.map(RequestId::into_string),
            },
            self.now_ms(),
        );
    }

    /// Stop the background loops and wait for in-flight scheduled jobs.
    pub async fn shutdown(&self) {
        crate::scheduler::shutdown(self).await;
    }
}

/// Whether a call goes into the function log: top-level calls do (client requests, scheduled
/// jobs); calls an action makes are part of their caller's entry.
pub(crate) enum Record {
    /// With the client request's id, if any.
    TopLevel(Option<RequestId>),
    Nested,
}

/// Milliseconds with three decimals, formatted only if the log line is emitted.
struct Millis(std::time::Duration);

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.3}", self.0.as_secs_f64() * 1000.0)
    }
}

/// One tracing line per call: DEBUG on success (every call is in the function log already, which
/// the dashboard and `npx convex logs` read; a stderr line per call at INFO cost about 16,000
/// instructions, more than many functions), WARN for user errors, ERROR for internal ones. The
/// failure lines carry the request id themselves, so they show it without any span enabled.
fn log_call(
    path: &str,
    kind: Option<FunctionKind>,
    started: Instant,
    error: Option<&FnError>,
    request_id: Option<&RequestId>,
) {
    let duration_ms = Millis(started.elapsed());
    let kind = kind.map_or("-", |k| k.as_str());
    let request_id = request_id.map(tracing::field::display);
    match error {
        None => {
            tracing::debug!(path, kind, duration_ms = %duration_ms, outcome = "success", "function call")
        }
        Some(e) if e.is_user_visible() => {
            tracing::warn!(path, kind, request_id, duration_ms = %duration_ms, outcome = e.code(), error = %e, "function call")
        }
        Some(e) => {
            tracing::error!(path, kind, request_id, duration_ms = %duration_ms, outcome = e.code(), error = %e, "function call")
        }
    }
}
