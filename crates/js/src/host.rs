//! QuickJS runtimes: one per thread that runs pushed functions, with the bundle loaded from
//! bytecode, reused across calls; and the driver loop of one call.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::{Declared, WriteOptions};
use rquickjs::promise::PromiseState;
use rquickjs::{Context, Ctx, Function, Module, Object, Promise};
use tickethub_runtime::{
    FnError, FunctionKind, LogLevel, MutationCtx, QueryCtx, Runtime, StoredModule, Value,
    Visibility,
};

use crate::{Bundle, JsError};

const PRELUDE: &str = include_str!("prelude.js");
/// Global that holds the namespace of each module imported so far in a context.
const NAMESPACES: &str = "__tickethub_namespaces";

/// Convex's texts for a call stopped by a limit.
pub(crate) fn timeout_error(limit: std::time::Duration) -> FnError {
    FnError::msg(format!(
        "Function execution timed out (maximum duration: {}s)",
        limit.as_secs_f64()
    ))
}
fn out_of_memory_error() -> FnError {
    FnError::msg(format!(
        "JavaScript execution ran out of memory (maximum memory usage: {} MB)",
        *tickethub_knobs::JS_MEMORY_LIMIT_BYTES >> 20
    ))
}

/// A pushed function: which bundle, module and export it runs.
pub(crate) struct Target {
    pub(crate) bundle: Arc<Bundle>,
    pub(crate) module: String,
    pub(crate) name: String,
}

/// The context a call's syscalls run against.
pub(crate) enum Invocation<'c, 'a> {
    Query(&'c QueryCtx<'a>),
    Mutation(&'c MutationCtx<'a>),
}

impl Invocation<'_, '_> {
    fn log(&self, level: LogLevel, message: &str) {
        match self {
            Invocation::Query(ctx) => ctx.log(level, message),
            Invocation::Mutation(ctx) => ctx.log(level, message),
        }
    }
    fn now_ms(&self) -> f64 {
        match self {
            Invocation::Query(ctx) => ctx.now_ms(),
            Invocation::Mutation(ctx) => ctx.now_ms(),
        }
    }
    pub(crate) fn runtime(&self) -> Runtime {
        match self {
            Invocation::Query(ctx) => ctx.runtime(),
            Invocation::Mutation(ctx) => ctx.runtime(),
        }
    }
}

// ---- module names and loading ----------------------------------------------------------------

/// `./_deps/x.js` imported from `dir/a.js` is `dir/_deps/x.js`; names are the CLI's module paths.
fn resolve_path(base: &str, name: &str) -> String {
    if !(name.starts_with("./") || name.starts_with("../")) {
        return name.to_string();
    }
    let mut parts: Vec<&str> = base.split('/').collect();
    parts.pop();
    for piece in name.split('/') {
        match piece {
            "." | "" => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

struct PathResolver;

impl Resolver for PathResolver {
    fn resolve<'js>(
        &mut self,
        _ctx: &Ctx<'js>,
        base: &str,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<String> {
        Ok(resolve_path(base, name))
    }
}

/// An import of a module the push does not hold.
fn missing_module(name: &str) -> rquickjs::Error {
    rquickjs::Error::new_loading_message(
        name,
        "no such module in the push (only relative imports of pushed modules work; npm packages must be bundled)",
    )
}

struct BytecodeLoader(Arc<Bundle>);

impl Loader for BytecodeLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        let Some(bytes) = self.0.bytecode.get(name) else {
            return Err(missing_module(name));
        };
        // SAFETY: these bytes were written by `Module::write` of this same QuickJS build, in
        // this process (`compile`), and never left memory: they are valid bytecode.
        #[allow(unsafe_code)]
        unsafe {
            Module::load(ctx.clone(), bytes)
        }
    }
}

/// What a thrown `null` reads as.
const THROWN_NULL: &str = "Uncaught null";

/// The text of a thrown value: `Uncaught Error: message` and the stack, as Convex shows it.
pub(crate) fn describe_thrown(thrown: &rquickjs::Value<'_>) -> String {
    if let Some(object) = thrown.as_object() {
        let name: Option<String> = object.get("name").ok();
        let message: Option<String> = object.get("message").ok();
        let stack: Option<String> = object.get("stack").ok();
        if let Some(message) = message {
            let mut text = format!("Uncaught {}: {message}", name.as_deref().unwrap_or("Error"));
            if let Some(stack) = stack.filter(|s| !s.is_empty()) {
                text.push('\n');
                text.push_str(stack.trim_end());
            }
            return text;
        }
    }
    if thrown.is_null() {
        return THROWN_NULL.to_string();
    }
    match thrown.as_string().and_then(|s| s.to_string().ok()) {
        Some(text) => format!("Uncaught {text}"),
        None => format!("Uncaught {thrown:?}"),
    }
}

/// The exception pending in `ctx` after `error`, as text.
pub(crate) fn exception_text(ctx: &Ctx<'_>, error: rquickjs::Error) -> String {
    match error {
        rquickjs::Error::Exception => describe_thrown(&ctx.catch()),
        other => other.to_string(),
    }
}

/// Declaring a module makes QuickJS load what it imports: during compilation, imports are
/// compiled from source (their bytecode is written when their own turn comes).
struct SourceLoader(Arc<BTreeMap<String, String>>);

impl Loader for SourceLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _attributes: Option<ImportAttributes<'js>>,
    ) -> rquickjs::Result<Module<'js, Declared>> {
        match self.0.get(name) {
            Some(source) => Module::declare(ctx.clone(), name, source.as_str()),
            None => Err(missing_module(name)),
        }
    }
}

/// Compile each module to bytecode in a scratch runtime, each in its own context so that a
/// module already loaded as another's import is declared afresh under its name.
pub(crate) fn compile(modules: &[StoredModule]) -> Result<BTreeMap<String, Vec<u8>>, JsError> {
    let runtime = rquickjs::Runtime::new().map_err(engine)?;
    runtime.set_memory_limit(*tickethub_knobs::JS_MEMORY_LIMIT_BYTES);
    let sources: BTreeMap<String, String> = modules
        .iter()
        .map(|m| (m.path.clone(), m.source.clone()))
        .collect();
    runtime.set_loader(PathResolver, SourceLoader(Arc::new(sources)));
    let mut out = BTreeMap::new();
    for module in modules {
        let context = Context::full(&runtime).map_err(engine)?;
        let bytes = context.with(|ctx| {
            let fail = |e| JsError::Compile {
                path: module.path.clone(),
                message: exception_text(&ctx, e),
            };
            let declared =
                Module::declare(ctx.clone(), module.path.as_str(), module.source.as_str())
                    .map_err(fail)?;
            declared.write(WriteOptions::default()).map_err(fail)
        })?;
        out.insert(module.path.clone(), bytes);
    }
    Ok(out)
}

// ---- one runtime ----------------------------------------------------------------------------

/// A syscall the JavaScript side is waiting on.
pub(crate) struct SyscallRequest {
    pub(crate) id: f64,
    pub(crate) op: String,
    pub(crate) args: String,
}

/// What the host functions installed in a context share with the driver loop.
#[derive(Default)]
struct HostState {
    requests: RefCell<Vec<SyscallRequest>>,
    next_id: Cell<f64>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    /// When the running call must stop; checked by QuickJS's interrupt handler.
    deadline: Cell<Option<Instant>>,
    /// The running call's time limit, for the error that names it.
    limit: Cell<std::time::Duration>,
    /// Set when the interrupt handler stopped a call.
    interrupted: Cell<bool>,
    /// The running call's runtime: the synchronous host calls (`process.env`,
    /// `db.normalizeId`) answer from it.
    runtime: RefCell<Option<Runtime>>,
    /// Calls run so far, mixed into each call's random seed.
    calls: Cell<u32>,
}

pub(crate) struct Worker {
    generation: u64,
    // Field order: the context is dropped before its runtime, which is kept to own the
    // interrupt handler and the loader for the worker's lifetime.
    pub(crate) context: Context,
    /// Also asked for its memory use after the first call.
    runtime: rquickjs::Runtime,
    state: Rc<HostState>,
    /// Set when a limit stopped a call: the heap may be in any state, so the next call gets a
    /// fresh runtime.
    poisoned: bool,
}

fn engine(e: impl std::fmt::Display) -> JsError {
    JsError::Engine(e.to_string())
}

impl Worker {
    fn new(bundle: &Arc<Bundle>) -> Result<Worker, JsError> {
        let runtime = rquickjs::Runtime::new().map_err(engine)?;
        runtime.set_memory_limit(*tickethub_knobs::JS_MEMORY_LIMIT_BYTES);
        runtime.set_max_stack_size(1 << 20);
        runtime.set_loader(PathResolver, BytecodeLoader(bundle.clone()));
        let state = Rc::new(HostState::default());
        let watched = state.clone();
        runtime.set_interrupt_handler(Some(Box::new(move || {
            let stop = watched
                .deadline
                .get()
                .is_some_and(|deadline| Instant::now() > deadline);
            if stop {
                watched.interrupted.set(true);
            }
            stop
        })));
        let context = Context::full(&runtime).map_err(engine)?;
        context
            .with(|ctx| install_host(&ctx, &state).map_err(|e| engine(exception_text(&ctx, e))))?;
        Ok(Worker {
            generation: bundle.generation,
            context,
            runtime,
            state,
            poisoned: false,
        })
    }

    /// Run the job queue until it is empty. (A job that throws is a promise reaction whose
    /// exception QuickJS already turned into a rejection; nothing is lost.)
    pub(crate) fn run_jobs(ctx: &Ctx<'_>) {
        while ctx.execute_pending_job() {}
    }

    /// The namespace of `module`, importing it the first time.
    pub(crate) fn namespace<'js>(
        &self,
        ctx: &Ctx<'js>,
        module: &str,
    ) -> Result<Object<'js>, String> {
        let cache: Object = ctx.globals().get(NAMESPACES).map_err(|e| e.to_string())?;
        if let Ok(Some(namespace)) = cache.get::<_, Option<Object>>(module) {
            return Ok(namespace);
        }
        let promise = Module::import(ctx, module).map_err(|e| exception_text(ctx, e))?;
        Worker::run_jobs(ctx);
        let namespace: Object = match promise.state() {
            PromiseState::Resolved => promise
                .result::<Object>()
                .unwrap_or(Err(rquickjs::Error::Unknown))
                .map_err(|e| exception_text(ctx, e))?,
            PromiseState::Rejected => {
                let error = promise
                    .result::<rquickjs::Value>()
                    .and_then(Result::err)
                    .unwrap_or(rquickjs::Error::Exception);
                return Err(exception_text(ctx, error));
            }
            PromiseState::Pending => return Err(
                "the module waits on something while loading (top-level await is not supported)"
                    .to_string(),
            ),
        };
        cache
            .set(module, namespace.clone())
            .map_err(|e| e.to_string())?;
        Ok(namespace)
    }
}

/// The host object the prelude takes, then the prelude itself.
fn install_host<'js>(ctx: &Ctx<'js>, state: &Rc<HostState>) -> rquickjs::Result<()> {
    let host = Object::new(ctx.clone())?;
    let s = state.clone();
    host.set(
        "send",
        Function::new(ctx.clone(), move |op: String, args: String| -> f64 {
            let id = s.next_id.get() + 1.0;
            s.next_id.set(id);
            s.requests
                .borrow_mut()
                .push(SyscallRequest { id, op, args });
            id
        })?,
    )?;
    let s = state.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |level: String, text: String| {
            let level = match level.as_str() {
                "INFO" => LogLevel::Info,
                "WARN" => LogLevel::Warn,
                "ERROR" => LogLevel::Error,
                "DEBUG" => LogLevel::Debug,
                _ => LogLevel::Log,
            };
            s.logs.borrow_mut().push((level, text));
        })?,
    )?;
    let s = state.clone();
    host.set(
        "env",
        Function::new(ctx.clone(), move |name: String| -> Option<String> {
            s.runtime.borrow().as_ref().and_then(|rt| rt.env_var(&name))
        })?,
    )?;
    let s = state.clone();
    host.set(
        "normalizeId",
        Function::new(
            ctx.clone(),
            move |table: String, id: String| -> Option<String> {
                let runtime = s.runtime.borrow();
                runtime
                    .as_ref()?
                    .normalize_id(&table, &id)
                    .map(|id| id.encode())
            },
        )?,
    )?;
    ctx.globals().set("__tickethub_host", host)?;
    ctx.globals().set(NAMESPACES, Object::new(ctx.clone())?)?;
    ctx.eval::<(), _>(PRELUDE)?;
    crate::web::install(ctx)
}

thread_local! {
    /// This thread's QuickJS runtime, for the newest bundle it has run.
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
}

/// Run `f` with this thread's QuickJS runtime for `bundle` (started, or restarted for a newer
/// push, as needed). A runtime a limit stopped is dropped afterwards.
pub(crate) fn with_worker<R>(
    bundle: &Arc<Bundle>,
    f: impl FnOnce(&mut Worker) -> Result<R, FnError>,
) -> Result<R, FnError> {
    WORKER.with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return Err(FnError::msg(
                "A built-in function called from JavaScript cannot call back into JavaScript inline (ctx.runQuery / ctx.runMutation from Rust into a pushed function)",
            ));
        };
        if slot.as_ref().map(|w| w.generation) != Some(bundle.generation) {
            *slot = None;
            let worker = Worker::new(bundle)
                .map_err(|e| FnError::Internal(format!("starting QuickJS: {e}")))?;
            *slot = Some(worker);
        }
        let Some(worker) = slot.as_mut() else {
            return Err(FnError::Internal("no QuickJS runtime".into()));
        };
        let outcome = f(worker);
        if worker.state.calls.get() == 1 {
            // What a runtime costs once the called module is loaded (the benchmark reads it).
            let usage = worker.runtime.memory_usage();
            tracing::debug!(
                bytes = usage.malloc_size,
                used = usage.memory_used_size,
                "QuickJS runtime after its first call"
            );
        }
        if worker.poisoned {
            *slot = None;
        }
        outcome
    })
}

/// Run one query or mutation. Its log lines go to `invocation`'s context.
pub(crate) fn call(
    target: &Target,
    invocation: Invocation<'_, '_>,
    args: Value,
) -> Result<Value, FnError> {
    with_worker(&target.bundle, |worker| {
        let outcome = run(worker, target, &invocation, args);
        for (level, text) in worker.state.logs.borrow_mut().drain(..) {
            invocation.log(level, &text);
        }
        outcome
    })
}

impl Worker {
    /// Set up the per-call state: the runtime handle, the deadline, the call count.
    pub(crate) fn begin_call(&self, runtime: Runtime, limit: std::time::Duration) {
        let state = &self.state;
        state.requests.borrow_mut().clear();
        state.interrupted.set(false);
        *state.runtime.borrow_mut() = Some(runtime);
        state.calls.set(state.calls.get().wrapping_add(1));
        state.limit.set(limit);
        state.deadline.set(Some(Instant::now() + limit));
    }

    /// Clear the per-call state and turn a stop by a limit into Convex's error (marking this
    /// runtime for replacement: its heap may be in any state).
    pub(crate) fn end_call<R>(&mut self, outcome: Result<R, FnError>) -> Result<R, FnError> {
        let state = self.state.clone();
        state.deadline.set(None);
        *state.runtime.borrow_mut() = None;
        match outcome {
            Ok(value) => Ok(value),
            Err(_) if state.interrupted.get() => {
                self.poisoned = true;
                Err(timeout_error(state.limit.get()))
            }
            // QuickJS throws "out of memory", or `null` when it cannot even allocate that
            // error. (So a handler's own `throw null` is reported as out of memory too: a rare
            // case, and a harmless one, since the thread then only starts a fresh runtime.)
            Err(e) if e.to_string().contains("out of memory") || e.to_string() == THROWN_NULL => {
                self.poisoned = true;
                Err(out_of_memory_error())
            }
            Err(e) => Err(e),
        }
    }

    /// The number of calls this runtime has run, mixed into each call's random seed.
    pub(crate) fn calls(&self) -> u32 {
        self.state.calls.get()
    }

    /// Take the log lines of the running call.
    pub(crate) fn take_logs(&self) -> Vec<(LogLevel, String)> {
        std::mem::take(&mut *self.state.logs.borrow_mut())
    }

    /// Take the syscalls the JavaScript side asked for since the last time.
    pub(crate) fn take_requests(&self) -> Vec<SyscallRequest> {
        std::mem::take(&mut *self.state.requests.borrow_mut())
    }

    /// Whether the interrupt handler stopped the running call.
    pub(crate) fn interrupted(&self) -> bool {
        self.state.interrupted.get()
    }
}

fn run(
    worker: &mut Worker,
    target: &Target,
    invocation: &Invocation<'_, '_>,
    args: Value,
) -> Result<Value, FnError> {
    worker.begin_call(invocation.runtime(), *tickethub_knobs::JS_CALL_TIME_LIMIT);
    let now = invocation.now_ms();
    let seed = (now.to_bits() as u32)
        ^ (now.to_bits() >> 32) as u32
        ^ worker.calls().wrapping_mul(0x9e37_79b9);
    let outcome = worker.context.with(|ctx| {
        drive(
            worker,
            &ctx,
            target,
            invocation,
            args,
            Frozen { now, seed },
            CallDepth::Top,
        )
    });
    worker.end_call(outcome)
}

/// A call's deterministic inputs: the frozen `Date.now()` and the `Math.random()` seed.
#[derive(Clone, Copy)]
struct Frozen {
    now: f64,
    seed: u32,
}

/// Whether `drive` runs the top-level call of this QuickJS runtime, or one that call made
/// inline (`ctx.runQuery` / `ctx.runMutation`), which shares its per-call state (the frozen
/// clock, the seed, open query streams, pending syscalls).
#[derive(Clone, Copy, PartialEq, Eq)]
enum CallDepth {
    Top,
    /// With the kind the caller asked for.
    Inline(FunctionKind),
}

/// `ctx.runQuery` / `ctx.runMutation` from a query or mutation (`1.0/runUdf`). A function of this
/// bundle runs here, in the caller's interpreter, inside the caller's transaction; a Rust
/// function of the built-in app runs through the registry. Either way the runtime checks
/// access, kind, depth, arguments and the result.
fn run_udf<'js>(
    worker: &Worker,
    ctx: &Ctx<'js>,
    caller: &Target,
    invocation: &Invocation<'_, '_>,
    args: &str,
    frozen: Frozen,
) -> Result<Value, FnError> {
    const OP: &str = "1.0/runUdf";
    let args: serde_json::Value = serde_json::from_str(args)
        .map_err(|e| FnError::Internal(format!("syscall {OP}: not JSON: {e}")))?;
    let path = crate::syscalls::function_name(OP, &args)?;
    let kind = match args.get("udfType").and_then(serde_json::Value::as_str) {
        Some("query") => FunctionKind::Query,
        Some("mutation") => FunctionKind::Mutation,
        other => {
            return Err(FnError::msg(format!(
                "ctx.runQuery / ctx.runMutation cannot run a function of type {other:?} here"
            )))
        }
    };
    if matches!(invocation, Invocation::Query(_)) && kind != FunctionKind::Query {
        return Err(FnError::msg(
            "ctx.runMutation is not available in a query: queries cannot write",
        ));
    }
    let call_args = Value::from_convex_json(args.get("args").unwrap_or(&serde_json::Value::Null))
        .map_err(|e| FnError::msg(format!("Invalid arguments: {e}")))?;
    let canonical = tickethub_runtime::canonicalize_path(path)?;
    let (module, name) = canonical
        .rsplit_once(':')
        .unwrap_or((&canonical, "default"));
    if !caller.bundle.bytecode.contains_key(module) {
        return match invocation {
            Invocation::Query(q) => q.run_query_inline(path, call_args),
            Invocation::Mutation(m) => m.run_mutation_inline(path, call_args),
        };
    }
    let child = Target {
        bundle: caller.bundle.clone(),
        module: module.to_string(),
        name: name.to_string(),
    };
    let run = |args| {
        let call = CallDepth::Inline(kind);
        drive(worker, ctx, &child, invocation, args, frozen, call)
    };
    match invocation {
        Invocation::Query(q) => q.run_inline_with(path, call_args, run),
        Invocation::Mutation(m) => m.run_inline_with(path, kind, call_args, run),
    }
}

/// Start the call and service its syscalls until its promise settles.
fn drive<'js>(
    worker: &Worker,
    ctx: &Ctx<'js>,
    target: &Target,
    invocation: &Invocation<'_, '_>,
    args: Value,
    frozen: Frozen,
    call: CallDepth,
) -> Result<Value, FnError> {
    let js = |e: rquickjs::Error| FnError::msg(exception_text(ctx, e));
    if matches!(call, CallDepth::Top) {
        let begin: Function = ctx.globals().get("__tickethub_begin").map_err(js)?;
        begin
            .call::<_, ()>((frozen.now, frozen.seed as f64, false))
            .map_err(js)?;
    }
    let namespace = worker
        .namespace(ctx, &target.module)
        .map_err(FnError::msg)?;
    let function: Object = namespace.get(target.name.as_str()).map_err(js)?;
    // An inline query from a mutation runs as a query (read-only) on the mutation's transaction.
    let invoker = match (call, invocation) {
        (CallDepth::Top, Invocation::Query(_)) | (CallDepth::Inline(FunctionKind::Query), _) => {
            "invokeQuery"
        }
        _ => "invokeMutation",
    };
    let invoke: Function = function.get(invoker).map_err(js)?;
    let args_json = format!("[{}]", args.to_convex_json());
    let promise: Promise = invoke.call((args_json,)).map_err(js)?;
    let settle: Function = ctx.globals().get("__tickethub_settle").map_err(js)?;
    // The error of the last failed syscall: when the handler lets it through, the caller gets
    // it with its own code (an invalid id, a missing table) rather than as a plain message.
    let mut last_error: Option<FnError> = None;
    loop {
        Worker::run_jobs(ctx);
        match promise.state() {
            PromiseState::Resolved => {
                let text: String = promise
                    .result::<String>()
                    .unwrap_or(Err(rquickjs::Error::Unknown))
                    .map_err(js)?;
                let json: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|e| FnError::Internal(format!("result JSON: {e}")))?;
                return Value::from_convex_json(&json).map_err(|e| {
                    FnError::msg(format!(
                        "The function returned a value that is not a Convex value: {e}"
                    ))
                });
            }
            PromiseState::Rejected => {
                let _ = promise.result::<rquickjs::Value>();
                let thrown = ctx.catch();
                return Err(rejection(&thrown, last_error));
            }
            PromiseState::Pending => {}
        }
        let requests: Vec<SyscallRequest> =
            std::mem::take(&mut *worker.state.requests.borrow_mut());
        if requests.is_empty() {
            return Err(FnError::msg(
                "The function did not finish: it waits on something that never happens in a query or mutation (timers and fetch are not available there)",
            ));
        }
        for request in requests {
            let serviced = if request.op == "1.0/runUdf" {
                run_udf(worker, ctx, target, invocation, &request.args, frozen)
                    .map(|value| value.to_convex_json())
            } else {
                crate::syscalls::service(invocation, &request.op, &request.args)
            };
            settle_one(&settle, request.id, serviced, &mut last_error).map_err(js)?;
        }
    }
}

/// Settle the promise of syscall `id`: resolved with its JSON, or rejected with the error's text
/// (and a `ConvexError`'s data, which the `convex` package rethrows as a `ConvexError`).
pub(crate) fn settle_one(
    settle: &Function<'_>,
    id: f64,
    serviced: Result<serde_json::Value, FnError>,
    last_error: &mut Option<FnError>,
) -> rquickjs::Result<()> {
    match serviced {
        Ok(json) => settle.call::<_, ()>((id, true, json.to_string(), rquickjs::Undefined)),
        Err(e) => {
            let text = e.to_string();
            let data = e.data().map(|d| d.to_convex_json().to_string());
            *last_error = Some(e);
            settle.call::<_, ()>((id, false, text, data))
        }
    }
}

/// What a rejected handler promise means for the caller.
pub(crate) fn rejection(thrown: &rquickjs::Value<'_>, last_error: Option<FnError>) -> FnError {
    if let Some(object) = thrown.as_object() {
        let message: String = object.get("message").unwrap_or_default();
        // `serializeConvexErrorData` of the `convex` package marks a ConvexError and turns its
        // data into Convex JSON text.
        let is_convex = object
            .get::<_, Option<rquickjs::Value>>("ConvexErrorSymbol")
            .ok()
            .flatten()
            .is_some();
        if is_convex {
            let data = object
                .get::<_, Option<String>>("data")
                .ok()
                .flatten()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .and_then(|json| Value::from_convex_json(&json).ok())
                .unwrap_or(Value::Null);
            return FnError::Convex { message, data };
        }
        if let Some(error) = last_error.filter(|e| e.to_string() == message) {
            return error;
        }
    }
    FnError::msg(describe_thrown(thrown))
}

// ---- analysis -------------------------------------------------------------------------------

/// An export as the scratch runtime saw it.
pub(crate) struct RawExport {
    pub(crate) module: String,
    pub(crate) name: String,
    pub(crate) kind: FunctionKind,
    pub(crate) visibility: Visibility,
    pub(crate) args_json: String,
    pub(crate) returns_json: String,
}

pub(crate) struct RawAnalysis {
    pub(crate) functions: Vec<RawExport>,
    /// `http.js`'s routes: (path, or prefix with a trailing `*`; method).
    pub(crate) routes: Vec<(String, String)>,
    /// `crons.js`'s `cronJobs().crons`, as JSON text.
    pub(crate) crons: Option<String>,
    /// `schema.js`'s `default.export()`.
    pub(crate) schema: Option<String>,
}

/// Modules that are not function modules: shared chunks, and Convex's configuration files.
fn is_function_module(path: &str) -> bool {
    !path.starts_with("_deps/") && path.ends_with(".js")
}

/// The module's default export when the `convex` package marked it with `flag` (`isRouter` on
/// an `httpRouter()`, `isCrons` on a `cronJobs()`).
fn flagged_default<'js>(namespace: &Object<'js>, flag: &str) -> Option<Object<'js>> {
    let default: Object = namespace.get("default").ok().flatten()?;
    (default.get::<_, Option<bool>>(flag).ok().flatten() == Some(true)).then_some(default)
}

pub(crate) fn analyze(bundle: &Arc<Bundle>) -> Result<RawAnalysis, JsError> {
    let worker = Worker::new(bundle)?;
    worker.state.deadline.set(Some(
        Instant::now() + *tickethub_knobs::JS_CALL_TIME_LIMIT * 10,
    ));
    worker.context.with(|ctx| {
        let mut functions = Vec::new();
        let mut routes = Vec::new();
        let mut crons = None;
        let mut schema = None;
        for path in bundle.bytecode.keys().filter(|p| is_function_module(p)) {
            let fail = |message: String| JsError::Evaluate {
                path: path.clone(),
                message,
            };
            let namespace = worker.namespace(&ctx, path).map_err(fail)?;
            if path == "schema.js" {
                let default: Option<Object> = namespace.get("default").ok().flatten();
                if let Some(default) = default {
                    let export: Function = default
                        .get("export")
                        .map_err(|e| fail(exception_text(&ctx, e)))?;
                    let text: String = export
                        .call::<_, String>((rquickjs::function::This(default.clone()),))
                        .map_err(|e| fail(exception_text(&ctx, e)))?;
                    schema = Some(text);
                }
                continue;
            }
            if path == crate::HTTP_MODULE {
                if let Some(router) = flagged_default(&namespace, "isRouter") {
                    let get_routes: Function = router
                        .get("getRoutes")
                        .map_err(|e| fail(exception_text(&ctx, e)))?;
                    let listed: Vec<rquickjs::Array> = get_routes
                        .call(())
                        .map_err(|e| fail(exception_text(&ctx, e)))?;
                    for entry in listed {
                        let route: String =
                            entry.get(0).map_err(|e| fail(exception_text(&ctx, e)))?;
                        let method: String =
                            entry.get(1).map_err(|e| fail(exception_text(&ctx, e)))?;
                        routes.push((route, method));
                    }
                }
            }
            if path == crate::CRONS_MODULE {
                if let Some(jobs) = flagged_default(&namespace, "isCrons") {
                    let declared: rquickjs::Value = jobs
                        .get("crons")
                        .map_err(|e| fail(exception_text(&ctx, e)))?;
                    let text = ctx
                        .json_stringify(declared)
                        .map_err(|e| fail(exception_text(&ctx, e)))?
                        .map(|t| t.to_string())
                        .transpose()
                        .map_err(|e| fail(e.to_string()))?;
                    crons = text;
                }
            }
            for key in namespace.keys::<String>() {
                let name = key.map_err(|e| fail(e.to_string()))?;
                let Ok(Some(value)) = namespace.get::<_, Option<Object>>(name.as_str()) else {
                    continue;
                };
                let flag = |f: &str| value.get::<_, Option<bool>>(f).ok().flatten() == Some(true);
                let kind = if flag("isQuery") {
                    FunctionKind::Query
                } else if flag("isMutation") {
                    FunctionKind::Mutation
                } else if flag("isAction") {
                    FunctionKind::Action
                } else {
                    // HTTP routers, crons and plain exports are not functions.
                    continue;
                };
                let visibility = if flag("isPublic") {
                    Visibility::Public
                } else {
                    Visibility::Internal
                };
                let text = |method: &str| -> Result<String, JsError> {
                    let f: Function = value
                        .get(method)
                        .map_err(|e| fail(exception_text(&ctx, e)))?;
                    f.call::<_, String>(())
                        .map_err(|e| fail(exception_text(&ctx, e)))
                };
                functions.push(RawExport {
                    module: path.clone(),
                    name,
                    kind,
                    visibility,
                    args_json: text("exportArgs")?,
                    returns_json: text("exportReturns")?,
                });
            }
        }
        Ok(RawAnalysis {
            functions,
            routes,
            crons,
            schema,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_imports_resolve_against_the_importing_module() {
        assert_eq!(resolve_path("messages.js", "./_deps/a.js"), "_deps/a.js");
        assert_eq!(resolve_path("dir/x.js", "./y.js"), "dir/y.js");
        assert_eq!(resolve_path("_deps/a.js", "../b.js"), "b.js");
        assert_eq!(resolve_path("", "messages.js"), "messages.js");
    }
}
