//! Runs the JavaScript a team pushes with the unmodified Convex CLI (`npx convex deploy` /
//! `npx convex dev`) in embedded QuickJS (`rquickjs`, which bundles QuickJS's C sources).
//!
//! - [`Bundle::compile`]: the CLI's ESM modules (`messages.js`, `_deps/chunk-*.js`...) compiled
//!   once to QuickJS bytecode. A syntax error fails here, naming the module.
//! - [`analyze`]: evaluate every module in a scratch runtime and list what it exports: queries,
//!   mutations, actions with their visibility and validators, and the schema of `schema.js`.
//!   A module that throws while loading fails here, naming it.
//! - [`build_app`]: one [`tickethub_runtime::App`] function per export, so pushed functions go
//!   through the runtime's own validation, auth, logging and sync, beside the Rust ones.
//! - `host`: one QuickJS runtime per thread that runs functions (the query threads, the store's
//!   writer thread), reused across calls and rebuilt only when a new push arrives; per-call time
//!   and memory limits.
//! - `syscalls`: the `Convex.asyncSyscall` operations of the `convex` package over
//!   [`QueryCtx`](tickethub_runtime::QueryCtx) and [`MutationCtx`](tickethub_runtime::MutationCtx).
//!
//! Syscalls never run inside JavaScript: a syscall parks a Promise and returns; the call's
//! driver loop runs the job queue until the handler's promise settles or waits on syscalls,
//! services those with the call's context and settles them. That keeps every borrow of the
//! context in plain Rust (no context pointer hidden in a thread-local) and lets QuickJS run to
//! completion between syscalls, as Convex's own isolate does between async ops.

mod action;
mod fetch;
mod host;
mod push;
mod syscalls;
mod validator;
mod web;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use push::{PreparedPush, PushError, PushService};
use serde_json::{json, Value as Json};
use tickethub_runtime::{
    canonicalize_path, ActionCtx, App, CronSchedule, FnError, FunctionKind, HttpRequest,
    MutationCtx, QueryCtx, Route, StoredModule, Validator, Value, Visibility,
};

/// Why a push (or loading the stored push at start-up) failed. Nothing of it was installed.
#[derive(Debug, thiserror::Error)]
pub enum JsError {
    /// A module does not parse.
    #[error("Failed to compile {path}: {message}")]
    Compile { path: String, message: String },
    /// A module threw while it was loaded.
    #[error("Failed to analyze {path}: {message}")]
    Evaluate { path: String, message: String },
    /// An export or the schema has a shape tickethub cannot use.
    #[error("{0}")]
    Analysis(String),
    /// QuickJS itself failed (out of memory while starting a runtime...).
    #[error("JavaScript engine error: {0}")]
    Engine(String),
}

impl JsError {
    /// Stable code, for the push endpoints' error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            JsError::Compile { .. } => "ModuleCompileError",
            JsError::Evaluate { .. } => "ModuleEvaluationError",
            JsError::Analysis(_) => "ModuleAnalysisError",
            JsError::Engine(_) => "JavaScriptEngineError",
        }
    }
}

/// Every push compiles into a new generation; a thread's runtime follows the generation of the
/// function it is asked to run.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// The pushed modules, compiled to bytecode. Shared by every thread that runs them.
pub struct Bundle {
    generation: u64,
    /// Module path (as the CLI names it, `messages.js`) → QuickJS bytecode.
    bytecode: BTreeMap<String, Vec<u8>>,
    /// The sources, to store them and to answer `get_config_hashes`.
    sources: Vec<StoredModule>,
}

impl Bundle {
    /// Compile every module. Fails on the first one that does not parse.
    pub fn compile(modules: Vec<StoredModule>) -> Result<Arc<Bundle>, JsError> {
        let bytecode = host::compile(&modules)?;
        Ok(Arc::new(Bundle {
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            bytecode,
            sources: modules,
        }))
    }

    pub fn modules(&self) -> &[StoredModule] {
        &self.sources
    }

    /// Total bytecode size, in bytes.
    pub fn bytecode_bytes(&self) -> usize {
        self.bytecode.values().map(Vec::len).sum()
    }
}

/// One exported function of a pushed module.
#[derive(Clone, Debug)]
pub struct ExportedFunction {
    /// `messages.js`.
    pub module: String,
    /// The export's name (`list`, or `default`).
    pub name: String,
    pub kind: FunctionKind,
    pub visibility: Visibility,
    /// `exportArgs()` as sent (Convex validator JSON); parsed in `args`.
    pub args_json: String,
    pub returns_json: String,
    pub args: Option<Validator>,
    pub returns: Option<Validator>,
}

impl ExportedFunction {
    /// `messages.js:list`.
    pub fn path(&self) -> String {
        format!("{}:{}", self.module, self.name)
    }
}

/// One table of `schema.ts`.
#[derive(Clone, Debug)]
pub struct SchemaTable {
    pub name: String,
    /// `(index name, fields)`.
    pub indexes: Vec<(String, Vec<String>)>,
}

impl SchemaTable {
    /// The store's definition: its indexes, its documents not validated (pushed validators are
    /// not enforced by the store).
    pub fn table_def(&self) -> tickethub_runtime::TableDef {
        tickethub_runtime::TableDef {
            name: self.name.clone(),
            fields: Default::default(),
            indexes: self
                .indexes
                .iter()
                .map(|(name, fields)| tickethub_runtime::IndexDef {
                    name: name.clone(),
                    fields: fields.clone(),
                })
                .collect(),
            validate: false,
        }
    }
}

/// One cron of `crons.js`.
#[derive(Clone, Debug)]
pub struct PushedCron {
    /// The identifier given to `crons.interval(...)` and friends.
    pub name: String,
    /// The function it runs, `module:export` as `getFunctionName` gives it.
    pub path: String,
    pub args: Value,
    pub schedule: CronSchedule,
}

/// The weekday numbers of a cron expression, by the names `crons.weekly` takes.
const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

/// A `cronJobs()` schedule as the runtime's: intervals in milliseconds, the calendar ones as the
/// 5-field UTC cron expression they mean.
fn cron_schedule(name: &str, schedule: &Json) -> Result<CronSchedule, JsError> {
    let bad = |what: String| JsError::Analysis(format!("crons.js: the cron `{name}`: {what}"));
    let number = |field: &str, default: Option<f64>| -> Result<f64, JsError> {
        match schedule.get(field).and_then(Json::as_f64).or(default) {
            Some(n) if n.is_finite() && n >= 0.0 => Ok(n),
            _ => Err(bad(format!("`{field}` must be a non-negative number"))),
        }
    };
    let kind = schedule.get("type").and_then(Json::as_str).unwrap_or("");
    let expression = match kind {
        "interval" => {
            let ms = if schedule.get("seconds").is_some() {
                number("seconds", None)? * 1000.0
            } else if schedule.get("minutes").is_some() {
                number("minutes", None)? * 60_000.0
            } else {
                number("hours", None)? * 3_600_000.0
            };
            if ms < 1.0 {
                return Err(bad("the interval must be positive".to_string()));
            }
            return Ok(CronSchedule::Interval { ms: ms as u64 });
        }
        "hourly" => format!("{} * * * *", number("minuteUTC", Some(0.0))?),
        "daily" => format!(
            "{} {} * * *",
            number("minuteUTC", Some(0.0))?,
            number("hourUTC", None)?
        ),
        "weekly" => {
            let day = schedule
                .get("dayOfWeek")
                .and_then(Json::as_str)
                .unwrap_or("");
            let day = WEEKDAYS
                .iter()
                .position(|d| d.eq_ignore_ascii_case(day))
                .ok_or_else(|| bad(format!("unknown dayOfWeek {day:?}")))?;
            format!(
                "{} {} * * {day}",
                number("minuteUTC", Some(0.0))?,
                number("hourUTC", None)?
            )
        }
        "monthly" => format!(
            "{} {} {} * *",
            number("minuteUTC", Some(0.0))?,
            number("hourUTC", None)?,
            number("day", None)?
        ),
        "cron" => schedule
            .get("cron")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("`cron` must be a string".to_string()))?
            .to_string(),
        other => return Err(bad(format!("unknown schedule type {other:?}"))),
    };
    let schedule = CronSchedule::Cron(expression);
    schedule.next_after(0.0).map_err(bad)?;
    Ok(schedule)
}

/// `cronJobs().crons`: `{identifier: {name, args: [args], schedule}}`.
fn pushed_crons(text: &str) -> Result<Vec<PushedCron>, JsError> {
    let declared: serde_json::Map<String, Json> = serde_json::from_str(text).map_err(|e| {
        JsError::Analysis(format!("crons.js: the crons are not a JSON object: {e}"))
    })?;
    let mut crons = Vec::new();
    for (name, job) in declared {
        let bad = |what: &str| JsError::Analysis(format!("crons.js: the cron `{name}`: {what}"));
        let path = job
            .get("name")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("no function name"))?;
        let args = job
            .get("args")
            .and_then(Json::as_array)
            .and_then(|a| a.first())
            .map(Value::from_convex_json)
            .transpose()
            .map_err(|e| bad(&format!("invalid args: {e}")))?
            .unwrap_or_else(|| Value::Object(Default::default()));
        let schedule = cron_schedule(&name, job.get("schedule").unwrap_or(&Json::Null))?;
        crons.push(PushedCron {
            path: path.to_string(),
            args,
            schedule,
            name,
        });
    }
    Ok(crons)
}

/// What a push defines.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub functions: Vec<ExportedFunction>,
    /// The routes of `http.js`'s `httpRouter()`, in its order (exact paths, then prefixes).
    pub routes: Vec<Route>,
    /// The crons of `crons.js`'s `cronJobs()`.
    pub crons: Vec<PushedCron>,
    /// `schema.js`'s `default.export()`, parsed; `None` without a schema.
    pub schema: Option<Json>,
    pub tables: Vec<SchemaTable>,
}

impl Analysis {
    /// The `functions` part of the CLI's `analysis[""]`: per module, its functions.
    pub fn functions_json(&self) -> Json {
        let mut modules: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
        for f in &self.functions {
            let returns = match f.returns_json.as_str() {
                "null" => Json::Null,
                text => Json::String(text.to_string()),
            };
            modules.entry(&f.module).or_default().push(json!({
                "name": f.name,
                "pos": null,
                "udfType": f.kind.as_str(),
                "visibility": {"kind": match f.visibility {
                    Visibility::Public => "public",
                    Visibility::Internal => "internal",
                }},
                "args": f.args_json,
                "returns": returns,
            }));
        }
        modules
            .into_iter()
            .map(|(module, functions)| {
                (
                    module.to_string(),
                    json!({"functions": functions, "httpRoutes": null, "cronSpecs": null, "sourceMapped": null}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Load every module of `bundle` in a scratch runtime and list its exports and schema.
pub fn analyze(bundle: &Arc<Bundle>) -> Result<Analysis, JsError> {
    let raw = host::analyze(bundle)?;
    let mut analysis = Analysis::default();
    for export in raw.functions {
        let path = format!("{}:{}", export.module, export.name);
        let canonical = canonicalize_path(&path)
            .map_err(|e| JsError::Analysis(format!("The export `{path}`: {e}")))?;
        if canonical != path {
            return Err(JsError::Analysis(format!(
                "The module path of `{path}` must end in `.js`"
            )));
        }
        let args = validator::parse_export(&export.args_json)?;
        let returns = validator::parse_export(&export.returns_json)?;
        analysis.functions.push(ExportedFunction {
            module: export.module,
            name: export.name,
            kind: export.kind,
            visibility: export.visibility,
            args_json: export.args_json,
            returns_json: export.returns_json,
            args,
            returns,
        });
    }
    for (path, method) in raw.routes {
        let method = http::Method::from_bytes(method.as_bytes()).map_err(|_| {
            JsError::Analysis(format!(
                "http.js: the route {path} has an invalid method {method:?}"
            ))
        })?;
        let route = match path.strip_suffix('*') {
            Some(prefix) => Route::prefix(method, prefix),
            None => Route::exact(method, &path),
        };
        analysis.routes.push(route);
    }
    if let Some(text) = raw.crons {
        analysis.crons = pushed_crons(&text)?;
    }
    if let Some(text) = raw.schema {
        let schema: Json = serde_json::from_str(&text)
            .map_err(|e| JsError::Analysis(format!("schema.js exported invalid JSON: {e}")))?;
        analysis.tables = schema_tables(&schema)?;
        analysis.schema = Some(schema);
    }
    Ok(analysis)
}

/// The tables and indexes of a `defineSchema(...).export()`.
fn schema_tables(schema: &Json) -> Result<Vec<SchemaTable>, JsError> {
    let bad = |what: &str| JsError::Analysis(format!("schema.js: {what}"));
    let tables = schema
        .get("tables")
        .and_then(Json::as_array)
        .ok_or_else(|| bad("no `tables` list"))?;
    let mut out = Vec::new();
    for table in tables {
        let name = table
            .get("tableName")
            .and_then(Json::as_str)
            .ok_or_else(|| bad("a table without a name"))?;
        let mut indexes = Vec::new();
        for index in table
            .get("indexes")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let index_name = index
                .get("indexDescriptor")
                .and_then(Json::as_str)
                .ok_or_else(|| bad("an index without a name"))?;
            let fields = index
                .get("fields")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("an index without fields"))?
                .iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect();
            indexes.push((index_name.to_string(), fields));
        }
        out.push(SchemaTable {
            name: name.to_string(),
            indexes,
        });
    }
    Ok(out)
}

/// Run a pushed action on the blocking pool (its QuickJS runtime blocks while it waits on
/// `fetch`, timers and `ctx.run*`); its syscalls run on this tokio runtime.
async fn run_action<I: action::ActionInput>(
    target: Arc<host::Target>,
    ctx: ActionCtx,
    input: I,
) -> Result<I::Output, FnError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || action::call(&target, &ctx, input, &handle))
        .await
        .map_err(|e| FnError::Internal(format!("the JavaScript action's thread: {e}")))?
}

/// Register every exported function of `analysis`, and the routes of `http.js`, into a new
/// [`App`] whose handlers run `bundle`'s JavaScript.
pub fn build_app(bundle: &Arc<Bundle>, analysis: &Analysis) -> App {
    let mut app = App::new();
    for f in &analysis.functions {
        let target = Arc::new(host::Target {
            bundle: bundle.clone(),
            module: f.module.clone(),
            name: f.name.clone(),
        });
        let path = f.path();
        let public = f.visibility == Visibility::Public;
        let spec = match f.kind {
            FunctionKind::Query => {
                let handler = move |ctx: &QueryCtx, args: Value| {
                    host::call(&target, host::Invocation::Query(ctx), args)
                };
                if public {
                    app.query(&path, handler)
                } else {
                    app.internal_query(&path, handler)
                }
            }
            FunctionKind::Mutation => {
                let handler = move |ctx: &MutationCtx, args: Value| {
                    host::call(&target, host::Invocation::Mutation(ctx), args)
                };
                if public {
                    app.mutation(&path, handler)
                } else {
                    app.internal_mutation(&path, handler)
                }
            }
            FunctionKind::Action | FunctionKind::HttpAction => {
                let handler = move |ctx: ActionCtx, args: Value| {
                    let target = target.clone();
                    async move { run_action(target, ctx, action::Args(args)).await }
                };
                if public {
                    app.action(&path, handler)
                } else {
                    app.internal_action(&path, handler)
                }
            }
        };
        spec.set_args(f.args.clone());
        if let Some(returns) = &f.returns {
            spec.returns(returns.clone());
        }
    }
    for cron in &analysis.crons {
        // Checked by `analyze`; a failure here would be a bug, so it is logged, not hidden.
        if let Err(e) = app.try_cron(
            &cron.name,
            cron.schedule.clone(),
            &cron.path,
            cron.args.clone(),
        ) {
            tracing::error!("a pushed cron was not installed: {e}");
        }
    }
    let router = Arc::new(host::Target {
        bundle: bundle.clone(),
        module: HTTP_MODULE.to_string(),
        name: "default".to_string(),
    });
    for route in &analysis.routes {
        let router = router.clone();
        app.http_route(
            route.clone(),
            move |ctx: ActionCtx, request: HttpRequest| {
                let router = router.clone();
                async move { run_action(router, ctx, Box::new(request)).await }
            },
        );
    }
    app
}

/// The module whose default export is the app's `httpRouter()`.
pub(crate) const HTTP_MODULE: &str = "http.js";
/// The module whose default export is the app's `cronJobs()`.
pub(crate) const CRONS_MODULE: &str = "crons.js";

#[cfg(test)]
mod tests {
    use super::*;

    fn module(path: &str, source: &str) -> StoredModule {
        StoredModule {
            path: path.to_string(),
            source: source.to_string(),
        }
    }

    #[test]
    fn cron_schedules_become_intervals_or_utc_cron_expressions() {
        let text = r#"{
            "tick": {"name": "jobs:tick", "args": [{"n": 1}], "schedule": {"type": "interval", "minutes": 2}},
            "daily": {"name": "jobs:daily", "args": [{}], "schedule": {"type": "daily", "hourUTC": 4}},
            "weekly": {"name": "jobs:weekly", "args": [{}], "schedule": {"type": "weekly", "dayOfWeek": "friday", "hourUTC": 9, "minuteUTC": 15}},
            "monthly": {"name": "jobs:monthly", "args": [{}], "schedule": {"type": "monthly", "day": 1, "hourUTC": 0, "minuteUTC": 0}},
            "raw": {"name": "jobs:raw", "args": [{}], "schedule": {"type": "cron", "cron": "*/5 * * * *"}}
        }"#;
        let crons = pushed_crons(text).expect("valid crons");
        let by_name: BTreeMap<&str, &PushedCron> =
            crons.iter().map(|c| (c.name.as_str(), c)).collect();
        assert!(matches!(
            by_name["tick"].schedule,
            CronSchedule::Interval { ms: 120_000 }
        ));
        let expr = |name: &str| match &by_name[name].schedule {
            CronSchedule::Cron(e) => e.clone(),
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(expr("daily"), "0 4 * * *");
        assert_eq!(expr("weekly"), "15 9 * * 5");
        assert_eq!(expr("monthly"), "0 0 1 * *");
        assert_eq!(expr("raw"), "*/5 * * * *");
        assert_eq!(by_name["tick"].path, "jobs:tick");

        let bad = r#"{"x": {"name": "a:b", "args": [{}], "schedule": {"type": "weekly", "dayOfWeek": "someday", "hourUTC": 1}}}"#;
        let error = pushed_crons(bad).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("the cron `x`: unknown dayOfWeek"),
            "{error}"
        );
    }

    #[test]
    fn a_syntax_error_names_its_module() {
        let error = Bundle::compile(vec![
            module("ok.js", "export const a = 1;"),
            module("bad.js", "export const = ;"),
        ])
        .err()
        .expect("refused");
        assert_eq!(error.code(), "ModuleCompileError");
        assert!(
            error.to_string().starts_with("Failed to compile bad.js: "),
            "{error}"
        );
    }

    #[test]
    fn a_module_that_throws_while_loading_names_itself() {
        let bundle = Bundle::compile(vec![
            module("_deps/shared.js", "export const base = 40;"),
            module(
                "ok.js",
                "import { base } from './_deps/shared.js'; export const a = base + 2;",
            ),
            module("boom.js", "throw new Error('boom while loading');"),
        ])
        .expect("compiles");
        let error = analyze(&bundle).expect_err("refused");
        assert_eq!(error.code(), "ModuleEvaluationError");
        let text = error.to_string();
        assert!(
            text.starts_with("Failed to analyze boom.js: Uncaught Error: boom while loading"),
            "{text}"
        );
    }

    #[test]
    fn exports_and_schema_are_found() {
        // The shape the `convex` package gives registered functions and `defineSchema`.
        let bundle = Bundle::compile(vec![
            module(
                "messages.js",
                r#"
                const fn = (flags, args) => Object.assign(() => {}, flags, {
                    exportArgs: () => args, exportReturns: () => "null" });
                export const list = fn({ isQuery: true, isPublic: true }, '{"type":"object","value":{"channel":{"fieldType":{"type":"string"},"optional":false}}}');
                export const hidden = fn({ isMutation: true, isInternal: true }, '{"type":"any"}');
                export const helper = 3;
                "#,
            ),
            module(
                "schema.js",
                r#"export default { export: () => JSON.stringify({ tables: [{ tableName: "messages",
                    indexes: [{ indexDescriptor: "by_channel", fields: ["channel"] }] }], schemaValidation: true }) };"#,
            ),
        ])
        .expect("compiles");
        let analysis = analyze(&bundle).expect("analyzes");
        let paths: Vec<String> = analysis
            .functions
            .iter()
            .map(ExportedFunction::path)
            .collect();
        assert_eq!(paths, ["messages.js:hidden", "messages.js:list"]);
        let list = &analysis.functions[1];
        assert_eq!(list.kind, FunctionKind::Query);
        assert_eq!(list.visibility, Visibility::Public);
        assert!(list.args.is_some());
        assert_eq!(analysis.functions[0].visibility, Visibility::Internal);
        assert!(analysis.functions[0].args.is_none());
        assert_eq!(analysis.tables[0].name, "messages");
        assert_eq!(
            analysis.tables[0].indexes,
            [("by_channel".to_string(), vec!["channel".to_string()])]
        );
        let json = analysis.functions_json();
        assert_eq!(json["messages.js"]["functions"][1]["udfType"], "Query");
    }
}
