//! The function registry: what an app declares.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tickethub_value::{Validator, Value};

use crate::{ActionCtx, FnError, HttpRequest, HttpResponse, MutationCtx, QueryCtx};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FunctionKind {
    Query,
    Mutation,
    Action,
    HttpAction,
}

impl std::fmt::Display for FunctionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FunctionKind::Query => "Query",
            FunctionKind::Mutation => "Mutation",
            FunctionKind::Action => "Action",
            FunctionKind::HttpAction => "HttpAction",
        })
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
}

/// For functions that take `{}`.
#[derive(serde::Deserialize, Debug, Default)]
pub struct NoArgs {}

impl Args for NoArgs {
    fn validator() -> Option<Validator> {
        Some(Validator::Object(Default::default()))
    }
}

// TODO(runtime): `impl Args for Value` (accept anything) once `Value: Deserialize` lands in the value crate.

/// `users:getUserById` and `users.js:getUserById` name the same function; canonical form is
/// `users.js:getUserById`. Rejects bad shapes (components `[A-Za-z0-9_.]`, ≤ 64 chars, identifiers).
pub fn canonicalize_path(_path: &str) -> Result<String, FnError> {
    todo!()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutePath {
    /// Exact path, starts with `/`.
    Exact(String),
    /// Path prefix, starts and ends with `/`.
    Prefix(String),
}

#[derive(Clone, Debug)]
pub struct Route {
    pub path: RoutePath,
    pub method: http::Method,
}

#[derive(Clone, Debug, PartialEq)]
pub enum CronSchedule {
    /// Every `ms` milliseconds.
    Interval { ms: u64 },
    /// A cron expression (5 fields, UTC).
    Cron(String),
}

/// Options of one registered function (chainable after registration).
pub struct FunctionSpec {
    _private: (),
}

impl FunctionSpec {
    /// Validate results against `validator` (ReturnsValidationError on mismatch).
    pub fn returns(&mut self, _validator: Validator) -> &mut FunctionSpec {
        todo!()
    }
}

/// An app: its functions, HTTP routes and crons. Build it once at start-up.
pub struct App {
    _private: (),
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl App {
    pub fn new() -> App {
        todo!()
    }

    pub fn query<A, R, F>(&mut self, _path: &str, _handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&QueryCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        todo!()
    }
    pub fn internal_query<A, R, F>(&mut self, _path: &str, _handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&QueryCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        todo!()
    }
    pub fn mutation<A, R, F>(&mut self, _path: &str, _handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&MutationCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        todo!()
    }
    pub fn internal_mutation<A, R, F>(&mut self, _path: &str, _handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(&MutationCtx, A) -> Result<R, FnError> + Send + Sync + 'static,
    {
        todo!()
    }
    pub fn action<A, R, F, Fut>(&mut self, _path: &str, _handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(ActionCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FnError>> + Send + 'static,
    {
        todo!()
    }
    pub fn internal_action<A, R, F, Fut>(&mut self, _path: &str, _handler: F) -> &mut FunctionSpec
    where
        A: Args,
        R: Serialize,
        F: Fn(ActionCtx, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, FnError>> + Send + 'static,
    {
        todo!()
    }
    /// An HTTP action. It gets an [`ActionCtx`] (runQuery/runMutation/runAction/auth/scheduler)
    /// and the request; an `Err` becomes HTTP 500 with a request id.
    pub fn http_route<F, Fut>(&mut self, _route: Route, _handler: F)
    where
        F: Fn(ActionCtx, HttpRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<HttpResponse, FnError>> + Send + 'static,
    {
        todo!()
    }
    /// A named cron running the internal (or public) mutation/action at `path` with `args`.
    pub fn cron(&mut self, _name: &str, _schedule: CronSchedule, _path: &str, _args: Value) {
        todo!()
    }
}
