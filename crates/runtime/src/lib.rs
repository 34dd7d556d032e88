//! The Convex functions model. Knows nothing of HTTP servers or wire formats.
//!
//! - [`registry`]: [`App`]: functions keyed by canonical path, kinds, visibility, HTTP routes, crons.
//! - [`error`]: [`FnError`], what a function (or the runtime calling it) can fail with.
//! - [`ctx`]: [`QueryCtx`], [`MutationCtx`], [`ActionCtx`], [`Auth`], [`Scheduler`], captured logs.
//! - [`db`]: the `db` API: get/insert/patch/replace/delete and the query builder.
//! - [`engine`]: [`Runtime`]: runs calls (queries on snapshots, mutations on the store's writer
//!   thread), HTTP actions, pinned snapshots, the clock.
//! - [`scheduler`]: scheduled functions and crons, kept in system tables (`_scheduled_functions`,
//!   `_cron_jobs`) so a restart neither loses nor repeats a job; the built-in admin-only
//!   queries `_system/scheduler:list` and `_system/crons:list`.
//! - [`storage`]: file storage: the `_storage` table, `ctx.storage`, signed one-time upload
//!   URLs, and the blob directory's bookkeeping (what is referenced, what to collect).
//! - [`env_vars`]: deployment environment variables (`_environment_variables`), read by
//!   `ctx.env` before the process environment; `npx convex env`.
//! - [`cli`]: the `_system/cli/*` queries the Convex CLI subscribes to (`data`, `function-spec`).
//! - [`snapshot`]: snapshot export and import in Convex's ZIP format (`npx convex export` /
//!   `import`, `tickethub export` / `import`), and the `_exports` / `_snapshot_imports` tables.
//! - [`pushed`]: the JavaScript modules pushed by `npx convex deploy` (`_modules`).
//! - [`test_clock`]: the test clock's offset, persisted so test time survives a restart.

pub mod admin;
pub mod cli;
pub mod ctx;
pub mod db;
pub mod engine;
pub mod env_vars;
pub mod error;
pub mod observe;
pub mod pushed;
pub mod registry;
mod request_id;
pub mod scheduler;
pub mod snapshot;
pub mod storage;
pub mod test_clock;
mod writer;

pub use ctx::{
    inspect_string, ActionCtx, Auth, Identity, LogLevel, MutationCtx, QueryCtx, Scheduler,
    UserIdentity,
};
pub use db::{
    DatabaseReader, DatabaseWriter, Doc, IndexRange, PaginationOpts, PaginationResult, Query,
};
pub use engine::{
    CallRequest, CallResult, Caller, Clock, Forwarder, ReadAt, Runtime, RuntimeConfig,
};
pub use env_vars::{EnvVarChange, EnvVarError};
pub use error::FnError;
pub use observe::{CallOutcome, FunctionLogEntry, HealthSample, Observer};
pub use pushed::StoredModule;
pub use registry::{
    canonicalize_path, App, Args, CronSchedule, CronSpec, FunctionKind, FunctionSpec, NoArgs,
    Route, RoutePath, Visibility, SYSTEM_MODULE_PREFIX,
};
pub use request_id::RequestId;

pub use scheduler::{CancelOutcome, JobRetention, JobState};
pub use storage::{
    ActionStorage, FileStorage, StorageConfig, StorageError, StorageMetadata, StorageReader,
    StorageWriter,
};
/// Stripe webhook signatures (`Stripe-Signature`), for apps' payment webhook routes.
pub use tickethub_auth::stripe;
/// Svix webhook verification, for apps' webhook routes (so an app needs no crate but this one).
pub use tickethub_auth::{VerifiedDelivery, WebhookError, WebhookVerifier};
/// `#[derive(Args)]`: the argument struct's fields become its validator (same name as the trait,
/// in the macro namespace).
pub use tickethub_macros::Args;
/// The store a [`Runtime`] runs on (apps' tests open one in a temporary directory).
pub use tickethub_store::{IndexDef, Order, Schema, Store, StoreOptions, TableDef, Timestamp};
pub use tickethub_value::validator::v;
/// Convex values, and serde to and from them.
pub use tickethub_value::{from_value, to_value, BridgeError, Object, Validator, Value};

/// HTTP action request and response: plain data from the `http` crate. The runtime uses `http`
/// for these types only; status codes and error bodies are the router's.
pub type HttpRequest = http::Request<bytes::Bytes>;
pub type HttpResponse = http::Response<bytes::Bytes>;
