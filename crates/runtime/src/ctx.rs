//! What a running function sees: `ctx.db`, `ctx.auth`, `ctx.scheduler`, logging and the clock.
//!
//! Log lines are captured per call as `[LEVEL] <message>` with the message quoted the way
//! Node's `util.inspect` prints a string (what Convex shows for `console.log("hi")`: `'hi'`):
//! single quotes, or double quotes when the text holds a `'` but no `"`, or backticks when it
//! holds both but no backtick; backslashes, the chosen quote and control characters escaped.

use std::cell::Cell;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tickethub_value::{Object, Value};

use crate::db::{with_writer, Source, SourceTables, TxnAccess};
use crate::engine::{Access, Inner};
use crate::registry::Handler;
use crate::storage::{ActionStorage, StorageReader, StorageWriter};
use crate::{DatabaseReader, DatabaseWriter, FnError, FunctionKind, Runtime};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Log,
    Info,
    Warn,
    Error,
    Debug,
}

impl LogLevel {
    fn label(self) -> &'static str {
        match self {
            LogLevel::Log => "LOG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
            LogLevel::Debug => "DEBUG",
        }
    }
}

/// Most log lines one call keeps (Convex's bound); later ones are dropped with one notice.
pub const MAX_LOG_LINES: usize = 256;
/// Longest message kept per line, in bytes; longer ones are cut at a char boundary.
pub const MAX_LOG_LINE_BYTES: usize = 32 * 1024;

/// Quote `text` like Node's `util.inspect` does for a string.
pub fn inspect_string(text: &str) -> String {
    let quote = if !text.contains('\'') {
        '\''
    } else if !text.contains('"') {
        '"'
    } else if !text.contains('`') && !text.contains("${") {
        '`'
    } else {
        '\''
    };
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// The log lines of one call, shared by the functions it calls (an action's lines include those
/// of the queries and mutations it runs).
#[derive(Clone, Default)]
pub(crate) struct LogSink {
    inner: Arc<Mutex<LogBuffer>>,
}

#[derive(Default)]
struct LogBuffer {
    lines: Vec<String>,
    overflowed: bool,
}

impl LogSink {
    pub(crate) fn log(&self, level: LogLevel, message: &str) {
        tracing::debug!(target: "tickethub::function_log", level = level.label(), "{message}");
        let mut buffer = self.inner.lock();
        if buffer.lines.len() >= MAX_LOG_LINES {
            if !buffer.overflowed {
                buffer.overflowed = true;
                buffer.lines.push(format!(
                    "[WARN] {}",
                    inspect_string(&format!(
                        "Log overflow (maximum {MAX_LOG_LINES}). Remaining log lines will be omitted."
                    ))
                ));
            }
            return;
        }
        let mut end = message.len().min(MAX_LOG_LINE_BYTES);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        buffer.lines.push(format!(
            "[{}] {}",
            level.label(),
            inspect_string(&message[..end])
        ));
    }
    pub(crate) fn lines(&self) -> Vec<String> {
        self.inner.lock().lines.clone()
    }
}

/// Convex's UserIdentity: `tokenIdentifier` = `iss|sub`, `subject`, `issuer`, and the other
/// claims under Convex's names (custom claims as they are). Serializes to Convex's flat shape.
#[derive(Clone, Debug, PartialEq)]
pub struct UserIdentity {
    pub token_identifier: String,
    pub subject: String,
    pub issuer: String,
    /// Every other attribute (name, email, pictureUrl, custom claims...).
    pub attributes: Object,
}

impl Serialize for UserIdentity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let reserved = ["tokenIdentifier", "subject", "issuer"];
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("tokenIdentifier", &self.token_identifier)?;
        map.serialize_entry("subject", &self.subject)?;
        map.serialize_entry("issuer", &self.issuer)?;
        for (k, v) in self
            .attributes
            .iter()
            .filter(|(k, _)| !reserved.contains(&k.as_str()))
        {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Who is calling.
#[derive(Clone, Debug, PartialEq)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// A verified user token.
    User(UserIdentity),
    /// The admin key: may call internal functions and act for anyone.
    Admin,
    /// HTTP actions only: the request carried a token that failed verification. The action still
    /// runs; `getUserIdentity()` fails with this message.
    InvalidToken(String),
}

/// `ctx.auth`.
#[derive(Clone, Debug)]
pub struct Auth {
    identity: Identity,
    /// Whether the server has any auth provider configured. Apps use it to decide whether caller
    /// checks apply (with auth off, there is nobody to check).
    enabled: bool,
}

impl Auth {
    pub fn new(identity: Identity, enabled: bool) -> Auth {
        Auth { identity, enabled }
    }
    /// Null without a token; the identity with one; an error in an HTTP action with a bad token.
    /// The admin key is not a user: null (as in scheduled functions and crons).
    pub fn get_user_identity(&self) -> Result<Option<&UserIdentity>, FnError> {
        match &self.identity {
            Identity::Anonymous | Identity::Admin => Ok(None),
            Identity::User(user) => Ok(Some(user)),
            Identity::InvalidToken(message) => Err(FnError::Unauthenticated(message.clone())),
        }
    }
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    pub fn is_admin(&self) -> bool {
        matches!(self.identity, Identity::Admin)
    }
    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

/// Deepest chain of inline calls (`run_query_inline` inside `run_mutation_inline`...), so a
/// function calling itself fails instead of overflowing the stack.
pub const MAX_INLINE_DEPTH: usize = 16;

/// What one query or mutation call shares with the functions it calls inline.
pub(crate) struct CallEnv {
    pub(crate) rt: Arc<Inner>,
    pub(crate) logs: LogSink,
    /// Frozen at the start of the call, like `Date.now()` in Convex queries and mutations.
    pub(crate) now_ms: f64,
    pub(crate) depth: Cell<usize>,
    /// Jobs this mutation scheduled (bounded), and the earliest time among them.
    pub(crate) scheduled: Cell<usize>,
}

impl CallEnv {
    pub(crate) fn new(rt: Arc<Inner>, logs: LogSink) -> CallEnv {
        let now_ms = rt.now_ms();
        CallEnv {
            rt,
            logs,
            now_ms,
            depth: Cell::new(0),
            scheduled: Cell::new(0),
        }
    }

    fn enter(&self) -> Result<DepthGuard<'_>, FnError> {
        let depth = self.depth.get() + 1;
        if depth > MAX_INLINE_DEPTH {
            return Err(FnError::msg(format!(
                "Function calls are nested more than {MAX_INLINE_DEPTH} deep"
            )));
        }
        self.depth.set(depth);
        Ok(DepthGuard(&self.depth))
    }
}

struct DepthGuard<'a>(&'a Cell<usize>);

impl Drop for DepthGuard<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

/// Most jobs one mutation may schedule (Convex's bound).
pub const MAX_SCHEDULED_PER_MUTATION: usize = 1000;

/// `ctx.scheduler` in mutations (transactional: jobs exist only if the mutation commits).
pub struct Scheduler<'a> {
    txn: &'a dyn TxnAccess,
    env: &'a CallEnv,
}

impl Scheduler<'_> {
    /// Run `path` with `args` after `delay_ms`. Returns the job's id (a `_scheduled_functions` id).
    pub fn run_after(
        &self,
        delay_ms: f64,
        path: &str,
        args: impl Serialize,
    ) -> Result<String, FnError> {
        let delay = if delay_ms.is_finite() {
            delay_ms.max(0.0)
        } else {
            0.0
        };
        self.run_at(self.env.now_ms + delay, path, args)
    }
    /// Run `path` at `unix_ms`.
    pub fn run_at(
        &self,
        unix_ms: f64,
        path: &str,
        args: impl Serialize,
    ) -> Result<String, FnError> {
        if self.env.scheduled.get() >= MAX_SCHEDULED_PER_MUTATION {
            return Err(FnError::msg(format!(
                "Too many functions scheduled by this mutation (limit: {MAX_SCHEDULED_PER_MUTATION})"
            )));
        }
        let (canonical, args) = crate::scheduler::prepare_job(&self.env.rt, path, args)?;
        let id = with_writer(self.txn, |txn| {
            crate::scheduler::insert_job(txn, &canonical, args, unix_ms)
        })??;
        self.env.scheduled.set(self.env.scheduled.get() + 1);
        Ok(id.encode())
    }
    /// Cancel a pending job (no-op if it already ran).
    pub fn cancel(&self, job_id: &str) -> Result<(), FnError> {
        with_writer(self.txn, |txn| {
            crate::scheduler::cancel_job(txn, job_id, self.env.now_ms)
        })?
    }
}

/// Validate args, run a query handler with `ctx`'s pieces, validate the result.
pub(crate) fn invoke_query(
    spec: &crate::FunctionSpec,
    source: Source<'_>,
    auth: &Auth,
    env: &CallEnv,
    args: Value,
) -> Result<Value, FnError> {
    let Handler::Query(handler) = &spec.handler else {
        return Err(FnError::Internal(format!("{} is not a query", spec.path)));
    };
    let ctx = QueryCtx {
        db: DatabaseReader { source },
        auth: auth.clone(),
        storage: StorageReader { source, env },
        env,
    };
    checked(spec, &source, args, |args| handler(&ctx, args))
}

/// Validate args, run a mutation handler inside the writer's transaction, validate the result.
pub(crate) fn invoke_mutation(
    spec: &crate::FunctionSpec,
    txn: &dyn TxnAccess,
    auth: &Auth,
    env: &CallEnv,
    args: Value,
) -> Result<Value, FnError> {
    let source = Source::Writer(txn);
    match &spec.handler {
        Handler::Mutation(handler) => {
            let ctx = MutationCtx {
                db: DatabaseWriter { txn },
                auth: auth.clone(),
                scheduler: Scheduler { txn, env },
                storage: StorageWriter { txn, env },
                env,
            };
            checked(spec, &source, args, |args| handler(&ctx, args))
        }
        Handler::Query(_) => invoke_query(spec, source, auth, env, args),
        Handler::Action(_) => Err(FnError::Internal(format!("{} is an action", spec.path))),
    }
}

/// The context of a query: a consistent snapshot.
pub struct QueryCtx<'a> {
    pub db: DatabaseReader<'a>,
    pub auth: Auth,
    pub storage: StorageReader<'a>,
    pub(crate) env: &'a CallEnv,
}

impl QueryCtx<'_> {
    /// The runtime, as a handle that outlives the context: pushed JavaScript's synchronous host
    /// calls (`process.env`, `db.normalizeId`) answer from it.
    pub fn runtime(&self) -> Runtime {
        Runtime {
            inner: self.env.rt.clone(),
        }
    }
    /// Milliseconds since the epoch, from the runtime's clock (the test clock when enabled),
    /// frozen at the start of the call.
    pub fn now_ms(&self) -> f64 {
        self.env.now_ms
    }
    pub fn log(&self, level: LogLevel, message: impl std::fmt::Display) {
        self.env.logs.log(level, &message.to_string());
    }
    /// Call another query's handler inline, in this snapshot (internal queries too).
    pub fn run_query_inline(&self, path: &str, args: impl Serialize) -> Result<Value, FnError> {
        let spec = self
            .env
            .rt
            .resolve(path, Access::Internal, Some(FunctionKind::Query))?;
        let args = crate::engine::args_value(args)?;
        let _depth = self.env.enter()?;
        invoke_query(&spec, self.db.source, &self.auth, self.env, args)
    }
    /// An inline query whose handler the caller runs itself: a JavaScript function calling
    /// another one of its bundle (`ctx.runQuery`), whose interpreter is already busy with the
    /// caller and cannot be entered through the registry. The runtime still resolves the path
    /// (internal functions included), counts the depth and checks the arguments and the result.
    pub fn run_inline_with(
        &self,
        path: &str,
        args: Value,
        run: impl FnOnce(Value) -> Result<Value, FnError>,
    ) -> Result<Value, FnError> {
        let spec = self
            .env
            .rt
            .resolve(path, Access::Internal, Some(FunctionKind::Query))?;
        let _depth = self.env.enter()?;
        checked(&spec, &self.db.source, args, run)
    }
}

/// A function's argument and result checks around its handler (`run`), against the tables of
/// the snapshot or transaction it runs in. Every query and mutation goes through here.
fn checked(
    spec: &crate::FunctionSpec,
    source: &Source<'_>,
    args: Value,
    run: impl FnOnce(Value) -> Result<Value, FnError>,
) -> Result<Value, FnError> {
    let tables = SourceTables(source);
    crate::engine::check_args(spec, &args, &tables)?;
    let result = run(args)?;
    crate::engine::check_returns(spec, &result, &tables)?;
    Ok(result)
}

/// The context of a mutation: reads and writes in one serializable transaction.
pub struct MutationCtx<'a> {
    pub db: DatabaseWriter<'a>,
    pub auth: Auth,
    pub scheduler: Scheduler<'a>,
    pub storage: StorageWriter<'a>,
    env: &'a CallEnv,
}

impl MutationCtx<'_> {
    /// As [`QueryCtx::runtime`].
    pub fn runtime(&self) -> Runtime {
        Runtime {
            inner: self.env.rt.clone(),
        }
    }
    pub fn now_ms(&self) -> f64 {
        self.env.now_ms
    }
    pub fn log(&self, level: LogLevel, message: impl std::fmt::Display) {
        self.env.logs.log(level, &message.to_string());
    }
    /// Call another mutation's (or query's) handler inline, inside this same transaction.
    pub fn run_mutation_inline(&self, path: &str, args: impl Serialize) -> Result<Value, FnError> {
        let spec = self.env.rt.resolve(path, Access::Internal, None)?;
        if spec.kind == FunctionKind::Action {
            return Err(FnError::WrongKind {
                path: path.to_string(),
                expected: FunctionKind::Mutation,
                actual: FunctionKind::Action,
            });
        }
        let args = crate::engine::args_value(args)?;
        let _depth = self.env.enter()?;
        invoke_mutation(&spec, self.db.txn, &self.auth, self.env, args)
    }
    /// As [`QueryCtx::run_inline_with`], for `ctx.runQuery` / `ctx.runMutation` in a mutation:
    /// `kind` is what the caller asked for, and the function must be of that kind.
    pub fn run_inline_with(
        &self,
        path: &str,
        kind: FunctionKind,
        args: Value,
        run: impl FnOnce(Value) -> Result<Value, FnError>,
    ) -> Result<Value, FnError> {
        let spec = self.env.rt.resolve(path, Access::Internal, Some(kind))?;
        let _depth = self.env.enter()?;
        checked(&spec, &Source::Writer(self.db.txn), args, run)
    }
}

/// The context of an action (and, with the request, of an HTTP action). Not transactional.
#[derive(Clone)]
pub struct ActionCtx {
    pub auth: Auth,
    pub storage: ActionStorage,
    rt: Runtime,
    logs: LogSink,
}

impl ActionCtx {
    pub(crate) fn new(rt: Runtime, auth: Auth, logs: LogSink) -> ActionCtx {
        ActionCtx {
            auth,
            storage: ActionStorage { rt: rt.clone() },
            rt,
            logs,
        }
    }
    /// The clock now (it moves during an action).
    pub fn now_ms(&self) -> f64 {
        self.rt.now_ms()
    }
    pub fn log(&self, level: LogLevel, message: impl std::fmt::Display) {
        self.logs.log(level, &message.to_string());
    }
    /// As [`QueryCtx::runtime`]: pushed JavaScript actions read `process.env` through it.
    pub fn runtime(&self) -> Runtime {
        self.rt.clone()
    }
    /// Run the query, mutation or action at `path` (internal ones too), as the same caller, and
    /// give back its value as it is (what pushed JavaScript's `ctx.runQuery` and kin call).
    pub async fn run_value(
        &self,
        kind: FunctionKind,
        path: &str,
        args: Value,
    ) -> Result<Value, FnError> {
        self.rt
            .execute(
                path.to_string(),
                args,
                self.auth.clone(),
                Access::Internal,
                Some(kind),
                self.logs.clone(),
            )
            .await
            .outcome
    }
    async fn run<R: DeserializeOwned>(
        &self,
        kind: FunctionKind,
        path: &str,
        args: impl Serialize,
    ) -> Result<R, FnError> {
        let args = crate::engine::args_value(args)?;
        let outcome = self.run_value(kind, path, args).await?;
        tickethub_value::from_value(&outcome).map_err(|e| {
            FnError::msg(format!(
                "The result of {path} does not have the expected type: {e}"
            ))
        })
    }
    /// Run a query (internal ones too) in its own snapshot, as the same caller.
    pub async fn run_query<R: DeserializeOwned>(
        &self,
        path: &str,
        args: impl Serialize,
    ) -> Result<R, FnError> {
        self.run(FunctionKind::Query, path, args).await
    }
    /// Run a mutation (internal ones too) in its own transaction, as the same caller.
    pub async fn run_mutation<R: DeserializeOwned>(
        &self,
        path: &str,
        args: impl Serialize,
    ) -> Result<R, FnError> {
        self.run(FunctionKind::Mutation, path, args).await
    }
    pub async fn run_action<R: DeserializeOwned>(
        &self,
        path: &str,
        args: impl Serialize,
    ) -> Result<R, FnError> {
        self.run(FunctionKind::Action, path, args).await
    }
    /// Schedule from an action (its own small transaction).
    pub async fn run_after(
        &self,
        delay_ms: f64,
        path: &str,
        args: impl Serialize,
    ) -> Result<String, FnError> {
        let delay = if delay_ms.is_finite() {
            delay_ms.max(0.0)
        } else {
            0.0
        };
        self.run_at(self.now_ms() + delay, path, args).await
    }
    /// Schedule `path` at `unix_ms` from an action.
    pub async fn run_at(
        &self,
        unix_ms: f64,
        path: &str,
        args: impl Serialize,
    ) -> Result<String, FnError> {
        let (canonical, args) = crate::scheduler::prepare_job(&self.rt.inner, path, args)?;
        crate::scheduler::schedule_standalone(&self.rt, canonical, args, unix_ms).await
    }
    /// Cancel a pending job from an action.
    pub async fn cancel(&self, job_id: &str) -> Result<(), FnError> {
        crate::scheduler::cancel_standalone(&self.rt, job_id.to_string()).await
    }
    /// An environment variable (e.g. CLERK_WEBHOOK_SECRET): the deployment's own
    /// (`npx convex env set`) if set, else the server process's. Read per call, so a changed
    /// deployment variable applies at once.
    pub fn env(&self, name: &str) -> Option<String> {
        self.rt.env_var(name)
    }
}
