//! What a running function sees: `ctx.db`, `ctx.auth`, `ctx.scheduler`, logging and the clock.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tickethub_value::{Object, Value};

use crate::{DatabaseReader, DatabaseWriter, FnError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Log,
    Info,
    Warn,
    Error,
    Debug,
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
    fn serialize<S: serde::Serializer>(&self, _s: S) -> Result<S::Ok, S::Error> {
        todo!()
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
    pub fn get_user_identity(&self) -> Result<Option<&UserIdentity>, FnError> {
        todo!()
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

/// `ctx.scheduler` in mutations (transactional: jobs exist only if the mutation commits).
pub struct Scheduler<'a> {
    _private: std::marker::PhantomData<&'a ()>,
}

impl Scheduler<'_> {
    /// Run `path` with `args` after `delay_ms`. Returns the job's id (a `_scheduled_functions` id).
    pub fn run_after(&self, _delay_ms: f64, _path: &str, _args: impl Serialize) -> Result<String, FnError> {
        todo!()
    }
    /// Run `path` at `unix_ms`.
    pub fn run_at(&self, _unix_ms: f64, _path: &str, _args: impl Serialize) -> Result<String, FnError> {
        todo!()
    }
    /// Cancel a pending job (no-op if it already ran).
    pub fn cancel(&self, _job_id: &str) -> Result<(), FnError> {
        todo!()
    }
}

/// The context of a query: a consistent snapshot.
pub struct QueryCtx<'a> {
    pub db: DatabaseReader<'a>,
    pub auth: Auth,
    _private: (),
}

impl QueryCtx<'_> {
    /// Milliseconds since the epoch, from the runtime's clock (the test clock when enabled).
    pub fn now_ms(&self) -> f64 {
        todo!()
    }
    pub fn log(&self, _level: LogLevel, _message: impl std::fmt::Display) {
        todo!()
    }
    /// Call another query's handler inline, in this snapshot.
    pub fn run_query_inline(&self, _path: &str, _args: impl Serialize) -> Result<Value, FnError> {
        todo!()
    }
}

/// The context of a mutation: reads and writes in one serializable transaction.
pub struct MutationCtx<'a> {
    pub db: DatabaseWriter<'a>,
    pub auth: Auth,
    pub scheduler: Scheduler<'a>,
    _private: (),
}

impl MutationCtx<'_> {
    pub fn now_ms(&self) -> f64 {
        todo!()
    }
    pub fn log(&self, _level: LogLevel, _message: impl std::fmt::Display) {
        todo!()
    }
    /// Call another mutation's (or query's) handler inline, inside this same transaction.
    pub fn run_mutation_inline(&self, _path: &str, _args: impl Serialize) -> Result<Value, FnError> {
        todo!()
    }
}

/// The context of an action (and, with the request, of an HTTP action). Not transactional.
#[derive(Clone)]
pub struct ActionCtx {
    pub auth: Auth,
    _private: (),
}

impl ActionCtx {
    pub fn now_ms(&self) -> f64 {
        todo!()
    }
    pub fn log(&self, _level: LogLevel, _message: impl std::fmt::Display) {
        todo!()
    }
    pub async fn run_query<R: DeserializeOwned>(&self, _path: &str, _args: impl Serialize) -> Result<R, FnError> {
        todo!()
    }
    pub async fn run_mutation<R: DeserializeOwned>(&self, _path: &str, _args: impl Serialize) -> Result<R, FnError> {
        todo!()
    }
    pub async fn run_action<R: DeserializeOwned>(&self, _path: &str, _args: impl Serialize) -> Result<R, FnError> {
        todo!()
    }
    /// Schedule from an action (its own small transaction).
    pub async fn run_after(&self, _delay_ms: f64, _path: &str, _args: impl Serialize) -> Result<String, FnError> {
        todo!()
    }
    /// The value of an environment variable given to the server (e.g. CLERK_WEBHOOK_SECRET).
    pub fn env(&self, _name: &str) -> Option<String> {
        todo!()
    }
}
