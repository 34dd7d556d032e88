//! The function registry: what an app declares.

use std::collections::BTreeMap;
use std::future::Future;

use std::sync::Arc;

use futures_util::future::BoxFuture;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tickethub_value::{BridgeError, Validator, Value};

use crate::{ActionCtx, FnError, HttpRequest, HttpResponse, MutationCtx, QueryCtx};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    Query,
    Mutation,
    Action,
    HttpAction,
}

impl FunctionKind {
    /// As Convex names the kind in messages ("Query", "Mutation", ...).
    pub fn as_str(self) -> &'static str {
        match self {
            FunctionKind::Query => "Query",
            FunctionKind::Mutation => "Mutation",
            FunctionKind::Action => "Action",
            FunctionKind::HttpAction => "HttpAction",
        }
    }
}

impl std::fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visibility {
    Public,
    Internal,
}

/// A function's argument type: deserialized from the call's args object, with the validator
/// checked before the handler runs. `#[derive(Args)]` (crate `tickethub-macros`) writes `validator`.
pub trait Args: DeserializeOwned + Send + 'static {
    /// None = accept anything (`v.any()`).
    fn validator() -> Option<Validator>;

    /// Turn the (already validated) args value into `Self`. The default goes through serde;
    /// `Value` overrides it to keep the value exactly as sent.
    #[doc(hidden)]
    fn from_args(value: Value) -> Result<Self, BridgeError> {
        tickethub_value::from_value(&value)
    }
}

/// For functions that take `{}`.
#[derive(serde::Deserialize, Debug, Default)]
pub struct NoArgs {}

impl Args for NoArgs {
    fn validator() -> Option<Validator> {
        Some(Validator::Object(Default::default()))
    }
}

/// Accept anything, as sent (`args: v.any()`).
impl Args for Value {
    fn validator() -> Option<Validator> {
        None
    }
    fn from_args(value: Value) -> Result<Self, BridgeError> {
        Ok(value)
    }
}

/// Longest module path component and function name Convex accepts.
const MAX_PATH_COMPONENT_LEN: usize = 64;

/// `users:getUserById` and `users.js:getUserById` name the same function; canonical form is
/// `users.js:getUserById`. Rejects bad shapes (components `[A-Za-z0-9_.]`, ≤ 64 chars, identifiers).
pub fn canonicalize_path(path: &str) -> Result<String, FnError> {
    let invalid =
        |reason: &str| FnError::Message(format!("Invalid function path `{path}`: {reason}"));
    // Module components may not contain `:`, so the last `:` is the only one in a valid path.
    let (module, name) = match path.rsplit_once(':') {
        Some((module, name)) => (module, name),
        None => (path, "default"),
    };
    if module.is_empty() {
        return Err(invalid("the module path is empty"));
    }
    for component in module.split('/') {
        if component.is_empty() {
            return Err(invalid("a module path component is empty"));
        }
        if component.len() > MAX_PATH_COMPONENT_LEN {
            return Err(invalid(
                "a module path component is longer than 64 characters",
            ));
        }
        if !component
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(invalid(
                "module path components may only contain letters, digits, `_` and `.`",
            ));
        }
    }
    if !is_identifier(name) {
        return Err(invalid(
            "the function name must be an identifier of at most 64 characters",
        ));
    }
    let extension = if module.ends_with(".js") { "" } else { ".js" };
    Ok(format!("{module}{extension}:{name}"))
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MAX_PATH_COMPONENT_LEN
        && (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutePath {
    /// Exact path, starts with `/`.
    Exact(String),
    /// Path prefix, starts and ends with `/`.
    Prefix(String),
}

/// As Convex's `getRoutes` names them: `/path`, or `/prefix/*`.
impl std::fmt::Display for RoutePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoutePath::Exact(path) => f.write_str(path),
            RoutePath::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub path: RoutePath,
    pub method: http::Method,
}

impl Route {
    /// `GET /hello`-style exact route.
    pub fn exact(method: http::Method, path: &str) -> Route {
        Route {
            path: RoutePath::Exact(path.to_string()),
            method,
        }
    }
    /// A `pathPrefix` route (`prefix` starts and ends with `/`).
    pub fn prefix(method: http::Method, prefix: &str) -> Route {
        Route {
            path: RoutePath::Prefix(prefix.to_string()),
            method,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CronSchedule {
    /// Every `ms` milliseconds.
    Interval { ms: u64 },
    /// A cron expression (5 fields, UTC).
    Cron(String),
}

impl CronSchedule {
    /// The first run strictly after `after_ms` (Unix ms).
    pub fn next_after(&self, after_ms: f64) -> Result<f64, String> {
        self.parse()?.next_after(after_ms)
    }

    /// Check and parse once; [`App::cron`] keeps the result so ticks never re-parse.
    pub(crate) fn parse(&self) -> Result<ParsedSchedule, String> {
        match self {
            CronSchedule::Interval { ms: 0 } => Err("a cron interval must be positive".into()),
            CronSchedule::Interval { ms } => Ok(ParsedSchedule::Interval { ms: *ms }),
            CronSchedule::Cron(expr) => Ok(ParsedSchedule::Cron {
                expr: expr.clone(),
                schedule: Box::new(parse_cron(expr)?),
            }),
        }
    }
}

/// A [`CronSchedule`] checked and parsed at registration.
#[derive(Clone, Debug)]
pub(crate) enum ParsedSchedule {
    Interval {
        ms: u64,
    },
    Cron {
        expr: String,
        schedule: Box<cron::Schedule>,
    },
}

impl ParsedSchedule {
    /// The first run strictly after `after_ms` (Unix ms).
    pub(crate) fn next_after(&self, after_ms: f64) -> Result<f64, String> {
        match self {
            ParsedSchedule::Interval { ms } => Ok(after_ms + *ms as f64),
            ParsedSchedule::Cron { expr, schedule } => {
                let after =
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(after_ms.floor() as i64)
                        .ok_or_else(|| format!("time {after_ms} is out of range"))?;
                let next = schedule
                    .after(&after)
                    .next()
                    .ok_or_else(|| format!("cron expression `{expr}` never fires again"))?;
                Ok(next.timestamp_millis() as f64)
            }
        }
    }
}

/// Parse a 5-field (minute hour day-of-month month day-of-week) UTC cron expression. The `cron`
/// crate wants a seconds field first, so "0 " is prepended.
fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    if fields != 5 {
        return Err(format!("cron expression `{expr}` must have 5 fields (minute hour day month weekday), has {fields}"));
    }
    format!("0 {expr}")
        .parse::<cron::Schedule>()
        .map_err(|e| format!("invalid cron expression `{expr}`: {e}"))
}

pub(crate) type QueryHandler =
    Box<dyn Fn(&QueryCtx, Value) -> Result<Value, FnError> + Send + Sync>;
pub(crate) type MutationHandler =
    Box<dyn Fn(&MutationCtx, Value) -> Result<Value, FnError> + Send + Sync>;
pub(crate) type ActionHandler =
    Box<dyn Fn(ActionCtx, Value) -> BoxFuture<'static, Result<Value, FnError>> + Send + Sync>;
pub(crate) type HttpHandler = Arc<
    dyn Fn(ActionCtx, HttpRequest) -> BoxFuture<'static, Result<HttpResponse, FnError>>
        + Send
        + Sync,
>;

/// A type-erased handler: args arrive validated as a `Value`; the result leaves as a `Value`.
pub(crate) enum Handler {
    Query(QueryHandler),
    Mutation(MutationHandler),
    Action(ActionHandler),
}

/// One registered function and its options (chainable after registration).
pub struct FunctionSpec {
    /// Shared, so the function log can keep it without a copy per call.
    pub(crate) path: Arc<str>,
    pub(crate) kind: FunctionKind,
    pub(crate) visibility: Visibility,
    pub(crate) args: Option<Validator>,
    pub(crate) returns: Option<Validator>,
    pub(crate) handler: Handler,
}

impl FunctionSpec {
    /// Replace the args validator (`None` = any). Functions pushed as JavaScript get theirs
    /// from the bundle's `exportArgs()`, not from a Rust type.
    pub fn set_args(&mut self, validator: Option<Validator>) -> &mut FunctionSpec {
        self.args = validator;
        self
    }
    /// Validate results against `validator` (ReturnsValidationError on mismatch).
    pub fn returns(&mut self, validator: Validator) -> &mut FunctionSpec {
        self.returns = Some(validator);
        self
    }
    /// Canonical path, e.g. `users.js:getUserById`.
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn kind(&self) -> FunctionKind {
        self.kind
    }
    pub fn visibility(&self) -> Visibility {
        self.visibility
    }
    /// The args validator (`None` = any).
    pub fn args_validator(&self) -> Option<&Validator> {
        self.args.as_ref()
    }
    pub fn returns_validator(&self) -> Option<&Validator> {
        self.returns.as_ref()
    }
}

pub(crate) struct HttpRoute {
    pub(crate) route: Route,
    pub(crate) handler: HttpHandler,
}

/// A declared cron job.
#[derive(Clone, Debug)]
pub struct CronSpec {
    pub name: String,
    pub schedule: CronSchedule,
    /// Canonical path of the function to run.
    pub path: String,
    pub args: Value,
    /// `schedule`, parsed once when the cron is declared.
    pub(crate) parsed: ParsedSchedule,
}

/// An app: its functions, HTTP routes and crons. Build it once at start-up.
///
/// Registration mistakes (a malformed or duplicate path, a bad cron expression) panic: they are
/// programming errors found the first time the app starts.
pub struct App {
    pub(crate) functions: BTreeMap<String, FunctionSpec>,
    pub(crate) routes: Vec<HttpRoute>,
    pub(crate) crons: Vec<CronSpec>,
    owner: Owner,
}

/// Module paths under this prefix belong to the runtime's built-in functions.
pub const SYSTEM_MODULE_PREFIX: &str = "_system/";

/// Who registers into an [`App`]: apps may not use `_system/` paths, so a built-in function is
/// never shadowed by (or shadows) an app's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owner {
    Application,
    Runtime,
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

fn to_result_value<R: Serialize>(result: R) -> Result<Value, FnError> {
    tickethub_value::to_value(&result)
        .map_err(|e| FnError::Internal(format!("result is not a Convex value: {e}")))
}

fn parse_args<A: Args>(args: Value) -> Result<A, FnError> {
    A::from_args(args).map_err(|e| FnError::ArgumentValidation(e.to_string()))
}

impl App {
    pub fn new() -> App {
        App {
            functions: BTreeMap::new(),
            routes: Vec::new(),
            crons: Vec::new(),
            owner: Owner::Application,
        }
    }

    /// The runtime's own functions (`_system/...`), merged in by `Runtime::new`.
    pub(crate) fn system() -> App {
        App {
            owner: Owner::Runtime,
            ..App::new()
        }
    }

    fn register(
        &mut self,
        path: &str,
        kind: FunctionKind,
        visibility: Visibility,
        args: Option<Validator>,
        handler: Handler,
    ) -> &mut FunctionSpec {
        let canonical =
            canonicalize_path(path).unwrap_or_else(|e| panic!("registering `{path}`: {e}"));
        if self.functions.contains_key(&canonical) {
            panic!("function `{canonical}` is registered twice");
        }
        let reserved = canonical.starts_with(SYSTEM_MODULE_PREFIX);
        match self.owner {
            Owner::Application if reserved => panic!(
                "registering `{path}`: paths under `{SYSTEM_MODULE_PREFIX}` are reserved for the runtime's built-in functions"
            ),
            Owner::Runtime if !reserved => {
                panic!("built-in function `{canonical}` must live under `{SYSTEM_MODULE_PREFIX}`")
            }
            Owner::Application | Owner::Runtime => {}
        }
        let spec = FunctionSpec {
            path: Arc::from(canonical.as_str()),
            kind,
            visibility,
            args,
            returns: None,
            handler,
        };
        self.functions.entry(canonical).or_insert(spec)
    }

    fn add_query<A, R, F>(
        &mut self,
        path: &str,
        visibility: Visibility,
        handler: F,
    ) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&QueryCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        let erased: QueryHandler =
            Box::new(move |ctx, args| to_result_value(handler(ctx, parse_args::<A>(args)?)?));
        self.register(
            path,
            FunctionKind::Query,
            visibility,
            A::validator(),
            Handler::Query(erased),
        )
    }

    fn add_mutation<A, R, F>(
        &mut self,
        path: &str,
        visibility: Visibility,
        handler: F,
    ) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&MutationCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        let erased: MutationHandler =
            Box::new(move |ctx, args| to_result_value(handler(ctx, parse_args::<A>(args)?)?));
        self.register(
            path,
            FunctionKind::Mutation,
            visibility,
            A::validator(),
            Handler::Mutation(erased),
        )
    }

    fn add_action<A, R, F, Fut>(
        &mut self,
        path: &str,
        visibility: Visibility,
        handler: F,
    ) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(ActionCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FnError>> + Send + 'static,
    {
        let erased: ActionHandler = Box::new(move |ctx, args| match parse_args::<A>(args) {
            Ok(args) => {
                let fut = handler(ctx, args);
                Box::pin(async move { to_result_value(fut.await?) })
            }
            Err(e) => Box::pin(async move { Err(e) }),
        });
        self.register(
            path,
            FunctionKind::Action,
            visibility,
            A::validator(),
            Handler::Action(erased),
        )
    }

    pub fn query<A, R, F>(&mut self, path: &str, handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&QueryCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        self.add_query(path, Visibility::Public, handler)
    }
    pub fn internal_query<A, R, F>(&mut self, path: &str, handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&QueryCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        self.add_query(path, Visibility::Internal, handler)
    }
    pub fn mutation<A, R, F>(&mut self, path: &str, handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&MutationCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        self.add_mutation(path, Visibility::Public, handler)
    }
    pub fn internal_mutation<A, R, F>(&mut self, path: &str, handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&MutationCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        self.add_mutation(path, Visibility::Internal, handler)
    }
    pub fn action<A, R, F, Fut>(&mut self, path: &str, handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(ActionCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FnError>> + Send + 'static,
    {
        self.add_action(path, Visibility::Public, handler)
    }
    pub fn internal_action<A, R, F, Fut>(&mut self, path: &str, handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(ActionCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FnError>> + Send + 'static,
    {
        self.add_action(path, Visibility::Internal, handler)
    }
    /// An HTTP action. It gets an [`ActionCtx`] (runQuery/runMutation/runAction/auth/scheduler)
    /// and the request; an `Err` becomes HTTP 500 with a request id.
    pub fn http_route<F, Fut>(&mut self, route: Route, handler: F)
    where
        F: Fn(ActionCtx, HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HttpResponse, FnError>> + Send + 'static,
    {
        match &route.path {
            RoutePath::Exact(p) => assert!(
                p.starts_with('/'),
                "HTTP route path `{p}` must start with `/`"
            ),
            RoutePath::Prefix(p) => {
                assert!(
                    p.starts_with('/') && p.ends_with('/'),
                    "HTTP route prefix `{p}` must start and end with `/`"
                )
            }
        }
        assert!(
            !self
                .routes
                .iter()
                .any(|r| r.route.path == route.path && r.route.method == route.method),
            "HTTP route {} {:?} is registered twice",
            route.method,
            route.path
        );
        let handler: HttpHandler = Arc::new(move |ctx, request| Box::pin(handler(ctx, request)));
        self.routes.push(HttpRoute { route, handler });
    }
    /// A named cron running the internal (or public) mutation/action at `path` with `args`.
    pub fn cron(&mut self, name: &str, schedule: CronSchedule, path: &str, args: Value) {
        self.try_cron(name, schedule, path, args)
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`App::cron`] for crons that come from data (pushed `crons.js`): a bad schedule or path,
    /// or a name declared twice, is an error naming the cron.
    pub fn try_cron(
        &mut self,
        name: &str,
        schedule: CronSchedule,
        path: &str,
        args: Value,
    ) -> Result<(), String> {
        let canonical = canonicalize_path(path).map_err(|e| format!("cron `{name}`: {e}"))?;
        let parsed = schedule
            .parse()
            .map_err(|e| format!("cron `{name}`: {e}"))?;
        parsed
            .next_after(0.0)
            .map_err(|e| format!("cron `{name}`: {e}"))?;
        if self.crons.iter().any(|c| c.name == name) {
            return Err(format!("cron `{name}` is declared twice"));
        }
        self.crons.push(CronSpec {
            name: name.to_string(),
            schedule,
            path: canonical,
            args,
            parsed,
        });
        Ok(())
    }

    /// Whether a function is registered at this canonical path.
    pub fn contains(&self, canonical_path: &str) -> bool {
        self.functions.contains_key(canonical_path)
    }
    /// The registered functions, by canonical path.
    pub fn functions(&self) -> impl Iterator<Item = &FunctionSpec> {
        self.functions.values()
    }
    /// The declared crons.
    pub fn crons(&self) -> &[CronSpec] {
        &self.crons
    }
}

/// Find the HTTP route for `method` and `path`: an exact match first, then the longest prefix.
/// HEAD is served by GET routes.
pub(crate) fn match_route<'r>(
    routes: &'r [HttpRoute],
    method: &http::Method,
    path: &str,
) -> Option<&'r HttpRoute> {
    let method = if method == http::Method::HEAD {
        &http::Method::GET
    } else {
        method
    };
    let same_method = || routes.iter().filter(move |r| r.route.method == *method);
    if let Some(exact) =
        same_method().find(|r| matches!(&r.route.path, RoutePath::Exact(p) if p == path))
    {
        return Some(exact);
    }
    same_method()
        .filter_map(|r| match &r.route.path {
            RoutePath::Prefix(prefix) if path.starts_with(prefix.as_str()) => {
                Some((prefix.len(), r))
            }
            _ => None,
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, r)| r)
}
